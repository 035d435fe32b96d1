import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { specDigest, type ProcessSpec } from '@lowcloud/api';
import { StateStore } from './state-store.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-state-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const spec = (name: string, memory = 32 * 2 ** 20): ProcessSpec => ({ name, binary: 'a'.repeat(64), args: [], env: {}, config: {}, grants: { memory, network: { listen: [], connect: [] } }, restart: 'always' });

describe('StateStore', () => {
  it('starts empty at generation 0 in a new directory, and writes nothing until a change', () => {
    const dir = tempDir();
    const s = new StateStore(dir);
    expect([s.generation, s.processes]).toEqual([0, {}]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('every change moves the generation by one and is on disk before it returns: a new store on the directory sees it', () => {
    const dir = tempDir();
    const s = new StateStore(dir);
    expect(s.set(spec('a'))).toBe(1);
    expect(s.set(spec('b'))).toBe(2);
    expect(s.set(spec('a', 64 * 2 ** 20))).toBe(3);
    expect(s.remove('b')).toBe(4);
    const again = new StateStore(dir);
    expect(again.generation).toBe(4);
    expect(again.processes).toEqual({ a: { spec: spec('a', 64 * 2 ** 20), specDigest: specDigest(spec('a', 64 * 2 ** 20)) } });
    // Written by rename: no temporary file is left next to it (only the generation before, kept).
    expect(fs.readdirSync(dir).sort()).toEqual(['state.json', 'state.json.prev']);
  });

  it('a change that throws changes nothing, in memory or on disk', () => {
    const dir = tempDir();
    const s = new StateStore(dir);
    s.set(spec('a'));
    const onDisk = fs.readFileSync(path.join(dir, 'state.json'), 'utf8');
    expect(() =>
      s.commit((p) => {
        delete p.a;
        throw new Error('half-way');
      }),
    ).toThrow('half-way');
    expect([s.generation, Object.keys(s.processes)]).toEqual([1, ['a']]);
    expect(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')).toBe(onDisk);
  });

  it('the state handed out is not changed behind its back by a later commit', () => {
    const s = new StateStore(tempDir());
    s.set(spec('a'));
    const seen = s.processes;
    s.remove('a');
    expect(Object.keys(seen)).toEqual(['a']);
    expect(s.processes).toEqual({});
  });
});
