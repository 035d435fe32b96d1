import { describe, expect, it } from 'vitest';
import { decideResume, describeDrift, type ResumableCall } from './resume.js';

const replace: ResumableCall[] = [
  { call: 'stop', process: 'kv' },
  { call: 'start', process: 'kv', specDigest: 'new' },
];

describe('decideResume', () => {
  it('runs every call on a machine still in the base state', () => {
    const d = decideResume(replace, { kv: 'old' }, { kv: 'old' });
    expect(d).toEqual({ ok: true, done: [], remaining: replace });
  });

  it('resumes after the stop of a replace went through', () => {
    const d = decideResume(replace, { kv: 'old' }, {});
    expect(d).toEqual({ ok: true, done: [replace[0]], remaining: [replace[1]] });
  });

  it('does nothing when the plan was already applied', () => {
    const d = decideResume(replace, { kv: 'old' }, { kv: 'new' });
    expect(d).toEqual({ ok: true, done: replace, remaining: [] });
  });

  it('refuses a machine that changed in a way the plan does not lead through', () => {
    const d = decideResume(replace, { kv: 'old', web: 'w1' }, { kv: 'other', web: 'w1', extra: 'x' });
    expect(d.ok).toBe(false);
    if (d.ok) return;
    expect(d.drift).toEqual([
      { process: 'extra', expected: [null], actual: 'x' },
      { process: 'kv', expected: ['old', null, 'new'], actual: 'other' },
    ]);
    expect(describeDrift('eu-1', d.drift)).toBe(
      'eu-1: process extra is x, the plan expects absent\neu-1: process kv is other, the plan expects old or absent or new',
    );
  });

  it('treats processes the plan does not touch as fixed', () => {
    expect(decideResume([], { a: '1' }, { a: '1' })).toEqual({ ok: true, done: [], remaining: [] });
    expect(decideResume([], { a: '1' }, {}).ok).toBe(false);
  });

  it('handles a config replacement and a new process together', () => {
    const calls: ResumableCall[] = [
      { call: 'replace-config', process: 'kv', specDigest: 'kv2' },
      { call: 'start', process: 'lb', specDigest: 'lb1' },
    ];
    const d = decideResume(calls, { kv: 'kv1' }, { kv: 'kv2' });
    expect(d).toEqual({ ok: true, done: [calls[0]], remaining: [calls[1]] });
  });
});
