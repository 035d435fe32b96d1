import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GuestHandle, GuestOptions } from '@lowcloud/sandbox';
import { repoRoot } from '../helpers/cli.js';
import { alive, guestOptions, waitFor } from '../helpers/guests.js';
import { hostileSandbox } from '../helpers/hostile-build.js';

/**
 * Code that has left the WebAssembly sandbox owns its guest host process, and with it the host's
 * end of the channel (fd 3). A test build of the guest host (this package's dist, copied, with a
 * hostile program run first in guest/main.js and guest/shared.js) writes what such code would:
 * bytes that are no message, a line past the cap, JSON that is no message, a forged exit. The
 * process that started it (here this test, in the agent the agent) must stay up, believe none of
 * it, and keep talking to the host. Over Node.js's IPC channel, the first ten bytes ended it.
 */
const build = path.join(repoRoot, 'test', `.hostile-build-${process.pid}`);
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-hostile-'));
const pids = new Set<number>();
let sandbox: typeof import('@lowcloud/sandbox');

const spyLog = path.join(work, 'spy.log');
const spyRun = path.join(work, 'run-spy');

const HOSTILE = `import { openSync as __o, closeSync as __c, writeSync as __w } from 'node:fs';
{
  // The files a process guest host's output and exit record end in, on the host's disk: before
  // issue 17's second round they were bind mounts it wrote itself (and an unlinked one stayed
  // writable). Said on stderr, which is where its output goes now.
  const said = [];
  for (const f of [${JSON.stringify(spyLog)}, ${JSON.stringify(`${spyLog}.1`)}, ${JSON.stringify(path.join(spyRun, 'exit.json'))}]) {
    try {
      __c(__o(f, 'r+'));
      said.push(f.split('/').pop() + ' writable');
    } catch (e) {
      said.push(f.split('/').pop() + ' ' + e.code);
    }
  }
  // A failed write is not hidden: the test waits for this line in the log and fails without it;
  // the hostile code must go on to its other attacks either way.
  try { __w(2, 'hostile: ' + said.join(', ') + '\\n'); } catch {}
}
{
  const say = (s) => {
    const b = typeof s === 'string' ? Buffer.from(s) : s;
    for (let off = 0; off < b.length; ) {
      try {
        off += __w(3, b, off);
      } catch (e) {
        if (e.code !== 'EAGAIN') return;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
  };
  // Node.js IPC (advanced serialization): a 6-byte message that does not deserialize.
  say(Buffer.from([0, 0, 0, 6, 0xff, 0x0f, 0x99, 0x99, 0x99, 0x99]));
  say('{bad json\\n');
  // 16 MiB without a line end, then one: past the cap, dropped whole (the next line counts).
  const junk = Buffer.alloc(2 ** 20, 0x61);
  for (let i = 0; i < 16; i++) say(junk);
  say('\\n');
  // A forged exit for a guest that does not exist, and one of the wrong shape.
  say(JSON.stringify({ type: 'exit', guest: 'nobody/0', exit: { kind: 'exit', code: 0 }, status: 0 }) + '\\n');
  say(JSON.stringify({ type: 'exit', guest: 42, exit: 'gone' }) + '\\n');
  // Forged confirmations (a shared host's \`started\`): for a guest it was never sent, of the wrong
  // shape, and a flood of them. Each is ignored; only a real add's own confirmation settles it.
  say(JSON.stringify({ type: 'started', guest: 'nobody/0' }) + '\\n');
  say(JSON.stringify({ type: 'started', guest: { id: 'h0' } }) + '\\n');
  for (let i = 0; i < 1000; i++) say(JSON.stringify({ type: 'started', guest: 'h' + i + '/' + i }) + '\\n');
}
`;

beforeAll(async () => {
  sandbox = await hostileSandbox(build, HOSTILE, ['main.js', 'shared.js']);
});

afterAll(() => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(build, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

const MiB = 2 ** 20;
const log = (name: string) => path.join(work, `${name}.log`);
const read = (name: string) => {
  try {
    return readFileSync(log(name), 'utf8');
  } catch {
    return '';
  }
};
const opts = (wasm: string, name: string, extra: Partial<GuestOptions> = {}): GuestOptions => {
  const out = { file: log(name), maxBytes: 4096, keep: 1 };
  return guestOptions(wasm, { grants: { memory: 8 * MiB, network: { listen: [], connect: [] } }, stdout: out, stderr: out, cacheDir: path.join(work, 'cache'), ...extra });
};

describe('a guest host whose code writes hostile bytes on its channel and tries its files', () => {
  it('a shared host: the process that started it stays up, believes nothing, and runs, stops and reads its guests', { timeout: 60_000 }, async ({ skip }) => {
    if (sandbox.jspiNode() === null) return skip('no Node.js with JSPI for a shared guest host');
    const guests: GuestHandle[] = await Promise.all(['h0', 'h1'].map((n) => sandbox.spawnGuest(opts('sleeper', n, { isolation: 'shared' }))));
    guests.forEach((g) => pids.add(g.pid));
    expect(guests[0]?.report.isolation[0]?.mechanism).toMatch(/separated from the other guests of its host/);
    await waitFor(() => read('h0') === 'ready\n' && read('h1') === 'ready\n', 20_000, 'both guests logged ready');
    const [a, b] = guests as [GuestHandle, GuestHandle];
    expect((await a.usage()).memoryBytes).toBeGreaterThan(0);
    expect(await a.stop(5000)).toEqual({ kind: 'stopped' });
    // The forged exit ended no guest; the host runs on with the other.
    expect(alive(b.pid)).toBe(true);
    expect(await b.stop(5000)).toEqual({ kind: 'stopped' });
  });

  it('a detached process guest host can write none of its log files nor its exit record: its output reaches them down a pipe, rotated outside the wall, its exit record through its launcher', { timeout: 60_000 }, async ({ skip }) => {
    if (sandbox.probeWall().wall === null) return skip(`kernel wall unavailable here: ${sandbox.probeWall().reason}`);
    // Rotated already, as after a while of logging: the guest host must not reach the rotated file either.
    writeFileSync(`${spyLog}.1`, 'older\n');
    const out = { file: spyLog, maxBytes: 4096, keep: 1 };
    const g = await sandbox.spawnGuest(opts('hello', 'spy', { stdout: out, stderr: out, detached: true, runDir: spyRun }));
    pids.add(g.pid);
    expect(await g.exited).toEqual({ kind: 'exit', code: 0 });
    // No path of them in its wall; what it said and what the guest printed arrived all the same.
    expect(read('spy')).toContain('hostile: spy.log ENOENT, spy.log.1 ENOENT, exit.json ENOENT\n');
    expect(read('spy')).toMatch(/^argc=1$/m);
    // The exit record, written by the launcher (this process's uid, not the guest host's), bounded.
    const rec = path.join(spyRun, 'exit.json');
    expect(statSync(rec).uid).toBe(process.getuid?.());
    expect(statSync(rec).size).toBeLessThanOrEqual(16 * 1024);
    expect(sandbox.readExitRecord(spyRun)).toMatchObject({ kind: 'exit', code: 0 });
    // The wall's file limit no longer has to make room for logs.
    expect(g.report.isolation.some((l) => /files up to 4294967296 bytes \(RLIMIT_FSIZE\)/.test(l.mechanism))).toBe(true);
  });

  it('a detached process guest host that floods its output: the host rotates its log, every file within its size, and an unlinked one is not written past its size', { timeout: 60_000 }, async ({ skip }) => {
    if (sandbox.probeWall().wall === null) return skip(`kernel wall unavailable here: ${sandbox.probeWall().reason}`);
    const file = log('flood');
    const out = { file, maxBytes: 64 * 1024, keep: 1 };
    const g = await sandbox.spawnGuest(opts('flood', 'flood', { stdout: out, stderr: out, detached: true, runDir: path.join(work, 'run-flood') }));
    pids.add(g.pid);
    await waitFor(() => existsSync(`${file}.1`), 20_000, 'the log to rotate');
    // What an agent's total log budget does: unlink the rotated file. It is made anew by the next rotation, never grown.
    rmSync(`${file}.1`);
    await waitFor(() => existsSync(`${file}.1`), 20_000, 'the log to rotate again');
    for (let i = 0; i < 20; i++) {
      for (const f of [file, `${file}.1`]) expect(statSync(f).size).toBeLessThanOrEqual(64 * 1024);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(readFileSync(`${file}.1`, 'utf8')).toMatch(/^y+$/);
    g.detach();
    // While nothing reads it the guest blocks on its output: its log stays as it is.
    await new Promise((r) => setTimeout(r, 300));
    const still = [statSync(file).size, statSync(`${file}.1`).mtimeMs];
    await new Promise((r) => setTimeout(r, 700));
    expect([statSync(file).size, statSync(`${file}.1`).mtimeMs]).toEqual(still);
    expect(alive(g.pid)).toBe(true);
    // Re-attached, it is read (and rotated) again.
    const again = await sandbox.attachGuest(path.join(work, 'run-flood'));
    expect(again?.pid).toBe(g.pid);
    await waitFor(() => statSync(`${file}.1`).mtimeMs !== still[1], 20_000, 'the log to be written again after re-attach');
    expect(await again?.stop(2000)).toEqual({ kind: 'stopped' });
  });

  it('a detached guest that prints and ends while nothing reads its output: what it printed reaches the log when its host side finds it gone', { timeout: 60_000 }, async ({ skip }) => {
    if (sandbox.probeWall().wall === null) return skip(`kernel wall unavailable here: ${sandbox.probeWall().reason}`);
    const runDir = path.join(work, 'run-late');
    const out = { file: log('late'), maxBytes: 64 * 1024, keep: 1 };
    // spin 1: a second of work, then one line, then exit.
    const g = await sandbox.spawnGuest(opts('spin', 'late', { args: ['1'], stdout: out, stderr: out, detached: true, runDir }));
    pids.add(g.pid);
    g.detach();
    expect(read('late')).not.toMatch(/iterations/);
    // Its launcher too, which takes what is left in the pipe as the guest host ends: a host side
    // that detached leaves that to the next one (stop 35's CI once saw it appended here, by the
    // side that had detached, whenever the launcher ended before this test looked).
    await new Promise((r) => (g.child.exitCode !== null || g.child.signalCode !== null ? r(null) : g.child.once('exit', r)));
    await new Promise((r) => setTimeout(r, 300));
    expect(alive(g.pid)).toBe(false);
    expect(read('late')).not.toMatch(/iterations/);
    // Its launcher took what was in the pipe; the next host side appends it to the log.
    expect(await sandbox.attachGuest(runDir)).toBeNull();
    expect(read('late')).toMatch(/^iterations \d+$/m);
    expect(existsSync(path.join(runDir, 'output-1.tail'))).toBe(false);
    expect(sandbox.readExitRecord(runDir)).toMatchObject({ kind: 'exit', code: 0 });
  });

  it('a process guest host, attached (`lowcloud run`): its exit is still the one its guest made', { timeout: 60_000 }, async () => {
    const g = await sandbox.spawnGuest(opts('hello', 'p0'));
    pids.add(g.pid);
    expect(await g.exited).toEqual({ kind: 'exit', code: 0 });
    expect(read('p0')).toMatch(/^argc=1$/m);
  });
});
