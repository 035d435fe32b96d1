import { describe, expect, it } from 'vitest';
import { parseHostBoot } from '../common/protocol.js';
import { JsonDocuments, parseGuestExit, parseGuestHostMessage } from './messages.js';

describe('the host <-> guest-host protocol, parsed closed', () => {
  it('bubblewrap pretty-printed report, then launcher lines, split into documents across chunk borders', () => {
    const docs = new JsonDocuments();
    const stream = '{\n    "child-pid": 4242,\n    "cgroup-namespace": 1\n}\n{"type": "oom"}\n';
    const out = [...stream].flatMap((c) => docs.push(c)).map(parseGuestHostMessage);
    expect(out).toEqual([{ type: 'ready', pid: 4242 }, { type: 'oom' }]);
  });

  it('text outside any document is kept as the reason; a string holding braces does not end a document', () => {
    const docs = new JsonDocuments();
    expect(docs.push('bwrap: Creating new namespace failed\n{"type": "refused", "message": "no } here {"}')).toEqual([{ type: 'refused', message: 'no } here {' }]);
    expect(docs.rest).toBe('bwrap: Creating new namespace failed');
  });

  it('a document past the limit is an error, not unbounded memory', () => {
    const docs = new JsonDocuments(64);
    const out = docs.push(`{"a": "${'x'.repeat(100)}"}`);
    expect(out[0]).toBeInstanceOf(Error);
  });

  it('only well-formed messages are believed', () => {
    for (const bad of [null, 7, 'oom', { type: 'ready', pid: -1 }, { type: 'ready', pid: 1.5 }, { 'child-pid': '12' }, { type: 'exit', guest: 'g', exit: { kind: 'exit', code: 300 } }, { type: 'nope' }]) {
      expect(parseGuestHostMessage(bad)).toBeNull();
    }
    expect(parseGuestHostMessage({ type: 'exit', guest: 'g', exit: { kind: 'violation', grant: 'memory', detail: 'x' } })).toEqual({ type: 'exit', guest: 'g', exit: { kind: 'violation', grant: 'memory', detail: 'x' } });
    expect(parseGuestExit({ kind: 'violation', grant: 'bogus', detail: 'x' })).toBeNull();
    expect(parseGuestExit({ kind: 'trap', message: 'm'.repeat(10_000) })).toEqual({ kind: 'trap', message: 'm'.repeat(4096) });
  });

  it('boot options: a wrong field is named', () => {
    const guest = { id: 'g', modulePath: '/m', kind: 'module', argv: ['a'], env: {}, dirs: [], config: [], disk: null, network: { listen: [], connect: [], udp: false }, workerHeapMb: null, stdin: false, stdout: 'inherit', stderr: 'pipe', exitRecord: null };
    expect(parseHostBoot({ type: 'boot', detached: false, guests: [guest] }).guests[0]?.id).toBe('g');
    expect(() => parseHostBoot({ type: 'boot', detached: false, guests: [{ ...guest, env: { A: 1 } }] })).toThrow('guests[0].env');
    expect(() => parseHostBoot({ type: 'boot', detached: false, guests: [{ ...guest, stdout: { file: '/l', maxBytes: 0, keep: 1 } }] })).toThrow('guests[0].stdout');
    expect(() => parseHostBoot({ type: 'boot', detached: 'no', guests: [guest] })).toThrow('detached');
  });
});
