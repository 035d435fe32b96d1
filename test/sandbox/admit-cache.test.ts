import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';
import { guest } from '../helpers/guests.js';

// The cache of admitted binaries: a component is transpiled (jco, ~0.4 s of CPU) once per binary,
// not once per memory grant nor once per process sharing the cache (the agents `lowcloud up`
// starts on one computer share one, agent --cache). Each admission runs in a process of its own,
// all at once, as the agents do.
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-admit-cache-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const MiB = 2 ** 20;
const dist = (f: string) => JSON.stringify(path.join(repoRoot, 'packages/sandbox/dist', f));

/** `admit` of `wasm` with `memory` bytes in a fresh process: what it returned. */
function admitInChild(wasm: string, memory: number, cacheDir: string): Promise<{ modulePath: string; cached: boolean; transpiled?: boolean }> {
  const script = `const { admit } = await import(${dist('host/admission.js')});
    process.stdout.write(JSON.stringify(await admit(${JSON.stringify(wasm)}, ${memory}, ${JSON.stringify(cacheDir)})));`;
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`admit exited ${code}: ${err}`))));
  });
}

describe('admitting a module', () => {
  it('starts made together read and hash the binary once, and all get the prepared module', async () => {
    const cache = path.join(work, 'together');
    const wasm = guest('sleeper');
    // 50 admissions at once in one process (a group's acts): the binary's reads counted.
    const script = `import fs from 'node:fs';
      let reads = 0;
      const read = fs.readFileSync;
      fs.readFileSync = function (f, ...rest) { if (String(f) === ${JSON.stringify(wasm)}) reads++; return read.call(this, f, ...rest); };
      const { admit } = await import(${dist('host/admission.js')});
      const all = await Promise.all(Array.from({ length: 50 }, () => admit(${JSON.stringify(wasm)}, ${4 * MiB}, ${JSON.stringify(cache)})));
      process.stdout.write(JSON.stringify({ reads, paths: [...new Set(all.map((a) => a.modulePath))], fresh: all.filter((a) => !a.cached).length }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { reads: number; paths: string[]; fresh: number };
    expect(out.reads).toBe(1);
    expect(out.fresh).toBe(1);
    expect(out.paths).toHaveLength(1);
    expect(existsSync(out.paths[0] as string)).toBe(true);
  });
});

describe('admitting a component into a shared cache', () => {
  it('transpiles it once for every grant and process, and each grant gets its own memory maximum', async () => {
    const cache = path.join(work, 'shared');
    const wasm = guest('filewriter.component');
    // Four processes at once: two grants, each asked twice.
    const results = await Promise.all([64, 128, 64, 128].map((m) => admitInChild(wasm, m * MiB, cache)));
    expect(results.filter((r) => r.transpiled === true)).toHaveLength(1);
    const dirs = new Set(results.map((r) => r.modulePath));
    expect(dirs.size).toBe(2);
    // Every copy is whole: a start that lost the race kept the winner's directory (a guest host may
    // already have it bound in its wall), it did not empty or replace it.
    for (const d of dirs) expect(existsSync(path.join(d, 'guest.js')), d).toBe(true);
    const names = readdirSync(cache);
    expect(names.filter((n) => n.endsWith('.transpiled'))).toHaveLength(1);
    expect(names.filter((n) => n.endsWith('.tmp') || n.endsWith('.lock'))).toEqual([]);
    // The grants' copies differ only where the memory maximum is written.
    const [a, b] = [...dirs].sort();
    const cores = readdirSync(a as string).filter((f) => f.endsWith('.wasm'));
    expect(cores.length).toBeGreaterThan(0);
    expect(cores.some((f) => !readFileSync(path.join(a as string, f)).equals(readFileSync(path.join(b as string, f))))).toBe(true);
    expect(readFileSync(path.join(a as string, 'guest.js'))).toEqual(readFileSync(path.join(b as string, 'guest.js')));
    // A later start of a third grant copies the checked transpile: no jco.
    const third = await admitInChild(wasm, 32 * MiB, cache);
    expect(third).toMatchObject({ cached: false, transpiled: false });
  }, 120_000);

  it('takes over the lock of a process that died holding it', async () => {
    const cache = path.join(work, 'stale');
    const wasm = guest('filewriter.component');
    // A lock left by a process that is gone: its pid file names a pid that does not run.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const digest = spawnSync('sha256sum', [wasm], { encoding: 'utf8' }).stdout.split(' ')[0] as string;
    const lock = path.join(cache, `${digest}.transpiled.lock`);
    spawnSync('mkdir', ['-p', lock]);
    spawnSync('sh', ['-c', `printf %s ${dead} > ${lock}/pid`]);
    const r = await admitInChild(wasm, 64 * MiB, cache);
    expect(r.transpiled).toBe(true);
    expect(existsSync(lock)).toBe(false);
  }, 60_000);
});
