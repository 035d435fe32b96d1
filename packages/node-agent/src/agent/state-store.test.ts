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

describe('StateStore: the previous generation', () => {
  it('rollback undoes the last commit, on disk and in memory (a refused call changes nothing)', () => {
    const dir = tempDir();
    const s = new StateStore(dir);
    s.set(spec('a'));
    const onDisk = fs.readFileSync(path.join(dir, 'state.json'), 'utf8');
    s.set(spec('b'), { key: 'ed25519:k', type: 'start', body: 'd'.repeat(64), process: 'b' });
    expect(s.lastCall).toEqual({ key: 'ed25519:k', type: 'start', body: 'd'.repeat(64), process: 'b', generation: 1 });
    s.rollback();
    expect([s.generation, Object.keys(s.processes)]).toEqual([1, ['a']]);
    expect(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')).toBe(onDisk);
    expect(new StateStore(dir).generation).toBe(1);
    // The next commit goes on from there, and keeps a previous generation again.
    expect(s.set(spec('c'))).toBe(2);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'state.json.prev'), 'utf8'))).toMatchObject({ generation: 1 });
  });

  it('a state.json that does not parse: the agent goes on from state.json.prev, says so, and keeps the broken file', () => {
    const dir = tempDir();
    const s = new StateStore(dir);
    s.set(spec('a'));
    s.set(spec('b'));
    const file = path.join(dir, 'state.json');
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.slice(0, 40)); // cut, as a disk that lied would leave it
    const lines: string[] = [];
    const again = new StateStore(dir, { report: (l) => lines.push(l) });
    expect([again.generation, Object.keys(again.processes)]).toEqual([1, ['a']]);
    expect(again.recovered).toMatch(/^state\.json does not parse .*kept as state\.json\.broken-.*recovered generation 1 from state\.json\.prev$/);
    expect(lines).toEqual([expect.stringMatching(/^STATE FILE RECOVERED: /)]);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('state.json.broken-')).map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))).toEqual([text.slice(0, 40)]);
    // The recovered generation is the state file again: a third start reads it without a word.
    expect(new StateStore(dir).recovered).toBeNull();
  });

  it('a spec edited by hand (its digest no longer matches) counts as broken too', () => {
    const dir = tempDir();
    const s = new StateStore(dir);
    s.set(spec('a'));
    s.set(spec('b'));
    const file = path.join(dir, 'state.json');
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"always"', '"never"'));
    expect(new StateStore(dir).recovered).toMatch(/process \w: its spec does not match its digest/);
  });

  it('both generations broken: the agent refuses to start, naming both files and the fix', () => {
    const dir = tempDir();
    const s = new StateStore(dir);
    s.set(spec('a'));
    s.set(spec('b'));
    fs.writeFileSync(path.join(dir, 'state.json'), '{"generation": 2, "proc');
    fs.rmSync(path.join(dir, 'state.json.prev'));
    fs.writeFileSync(path.join(dir, 'state.json.prev'), '');
    expect(() => new StateStore(dir)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringMatching(/state\.json: does not parse .* and state\.json\.prev .*does not parse.*move both aside/) }));
  });
});
