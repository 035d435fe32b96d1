import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { sha256Hex, specDigest, type AgentEvent, type ProcessSpec } from '@lowcloud/api';
import { probeCapabilities, warmPoolRefusal } from '@lowcloud/sandbox';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { repoRoot } from '../helpers/cli.js';
import { alive, cgroupDirOf, guest, sharedHostPids, waitFor } from '../helpers/guests.js';

/**
 * The warm pool (issue 23): an agent that runs `process` guests keeps walled guest hosts running
 * under uids reserved for them, and a first start of a process whose module has no disk, network or
 * GPU grant takes one: its uid becomes the process's for good, its cgroup gets the guest's limits,
 * it runs nothing else and ends with its guest. It survives the agent like any guest, and a
 * replace-config restarts the guest in it. Needs root, memory and cpu cgroups and a Node.js with
 * JSPI; the test says which is missing where one is.
 */
const fx = useAgentFixture();
const hello = path.join(repoRoot, 'examples/hello/bin/hello.wasm');
const caps = await probeCapabilities();
const refusal = warmPoolRefusal();

/** Every shared (and warm) guest host of the agent with this state directory. */
const allHostPids = (stateDir: string): number[] => sharedHostPids(path.join(stateDir, 'run', '.shared-hosts'));
const uidsOf = (stateDir: string): Record<string, number> => JSON.parse(readFileSync(path.join(stateDir, 'uids.json'), 'utf8')) as Record<string, number>;
const procUid = (pid: number): number => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
/** The uid a host runs as; null once it ended. */
const uidOrNull = (pid: number): number | null => {
  try {
    return procUid(pid);
  } catch {
    return null;
  }
};
/** Those hosts less the ones under the shared processes' uid (the warm host a fresh agent keeps for its first shared start, and shared hosts). */
const hostPids = (stateDir: string): number[] => {
  const shared = uidsOf(stateDir)['#shared'];
  return allHostPids(stateDir).filter((p) => uidOrNull(p) !== shared);
};
const read = (file: string): string => readFileSync(file, 'utf8').trim();

describe.skipIf(refusal !== null)(`the warm pool for process guests${refusal === null ? '' : ` (skipped: ${refusal})`}`, () => {
  const stateDir = path.join(fx.dir, 'warm');
  let agent: RunningAgent;
  let base: ProcessSpec;
  const seen = new Set<number>();
  afterAll(() => {
    for (const pid of seen) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  const statusOf = async (c: Awaited<ReturnType<typeof fx.connect>>, name: string) => (await c.status()).processes.find((p) => p.name === name);
  /** The warm hosts: the agent's shared hosts no process runs in, once there are `n`. */
  const warmHosts = async (c: Awaited<ReturnType<typeof fx.connect>>, n: number): Promise<number[]> => {
    let idle: number[] = [];
    await waitFor(
      async () => {
        const used = new Set((await c.status()).processes.map((p) => p.pid));
        idle = hostPids(stateDir).filter((p) => !used.has(p));
        idle.forEach((p) => seen.add(p));
        return idle.length === n;
      },
      30_000,
      `${n} warm hosts`,
    );
    return idle;
  };
  const logOf = (name: string): string => {
    try {
      return readFileSync(path.join(stateDir, 'logs', `${name}.log`), 'utf8');
    } catch {
      return '';
    }
  };

  it('a fresh agent keeps one warm host for its first shared start, under the shared processes\' uid; that start runs in it, with its group\'s limits', { timeout: 90_000 }, async () => {
    agent = await fx.start({ stateDir });
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    let warm = 0;
    await waitFor(
      () => {
        const ps = allHostPids(stateDir);
        warm = ps.length === 1 ? (ps[0] as number) : 0;
        return warm !== 0 && uidOrNull(warm) !== null;
      },
      30_000,
      'one warm host',
    );
    seen.add(warm);
    // No process start asked for yet: no uid reserved for process starts.
    expect(Object.keys(uidsOf(stateDir))).toEqual(['#shared']);
    expect(procUid(warm)).toBe(uidsOf(stateDir)['#shared']);
    const s = await uploadSpec(c, 's0', guest('sleeper'), { isolation: 'shared', grants: { memory: 4 << 20, network: { listen: [], connect: [] } } });
    await c.start(s);
    const s0 = await statusOf(c, 's0');
    expect(s0?.pid).toBe(warm);
    // Its cgroup has what a host of that group is launched with: memory for 1,024 guests of 4 MiB
    // and the host overhead (96 MiB; above the warm host's first limit, which v1's memory+swap
    // limit must follow upwards), no CPU quota.
    const limit = (4 * 1024 + 96) * 2 ** 20;
    const memDir = cgroupDirOf(warm, 'memory');
    expect(Number(read(path.join(memDir, caps.cgroup === 'v2' ? 'memory.max' : 'memory.limit_in_bytes')))).toBe(limit);
    if (caps.cgroup === 'v1' && existsSync(path.join(memDir, 'memory.memsw.limit_in_bytes'))) expect(Number(read(path.join(memDir, 'memory.memsw.limit_in_bytes')))).toBe(limit);
    const cpuDir = cgroupDirOf(warm, 'cpu');
    if (caps.cgroup === 'v2') expect(read(path.join(cpuDir, 'cpu.max'))).toBe('max 100000');
    else expect(read(path.join(cpuDir, 'cpu.cfs_quota_us'))).toBe('-1');
    expect(s0?.enforcement?.memory[1]).toEqual({ mechanism: `shared guest host (up to 1024 guests): cgroup ${caps.cgroup} memory limit ${limit} bytes (grant + host overhead)`, level: 'kernel' });
    // A shared host like any other: the next guest of the group joins it, and it ends with its last guest.
    await c.start({ ...s, name: 's1' });
    expect((await statusOf(c, 's1'))?.pid).toBe(warm);
    await Promise.all(['s0', 's1'].map((n) => c.stop(n, 2000)));
    await waitFor(() => !alive(warm), 15_000, 'the shared host gone with its guests');
  });

  it('a first process start takes a warm host: its uid becomes the process\'s, its cgroup gets the grant, the report says so', { timeout: 90_000 }, async () => {
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    // No process asked for yet: no warm host (an agent of shared guests only keeps none).
    await new Promise((r) => setTimeout(r, 500));
    expect(hostPids(stateDir)).toEqual([]);
    base = await uploadSpec(c, 'p0', hello, { args: ['/etc/hello.conf', '1'], grants: { memory: 32 << 20, cpu: 0.5, network: { listen: [], connect: [] } } }, { '/etc/hello.conf': 'greeting 0\n' });
    // The first process start fills the pool (it starts cold itself: no host was warm yet).
    await c.start({ ...base, name: 'p0' });
    const cold = (await statusOf(c, 'p0'))?.pid as number;
    seen.add(cold);
    expect(hostPids(stateDir)).not.toContain(cold);
    const warm = await warmHosts(c, 2);
    const before = uidsOf(stateDir);
    expect(Object.keys(before).filter((k) => k.startsWith('#warm-')).sort()).toEqual(['#warm-0', '#warm-1']);

    await c.start({ ...base, name: 'p1' });
    const p1 = await statusOf(c, 'p1');
    const pid = p1?.pid as number;
    expect(warm).toContain(pid);
    await waitFor(() => logOf('p1').includes('greeting 0, world!'), 10_000, 'p1 running');
    // The placeholder's uid is p1's now, and the host runs as it.
    const after = uidsOf(stateDir);
    const taken = Object.keys(before).find((k) => before[k] === after.p1);
    expect(taken).toMatch(/^#warm-[01]$/);
    expect(after[taken as string]).not.toBe(after.p1); // refilled with a new uid, or gone
    expect(procUid(pid)).toBe(after.p1);
    // Its cgroup has p1's limits, not the pool's: 32 MiB + the host overhead (96 MiB), 0.5 cores.
    const memDir = cgroupDirOf(pid, 'memory');
    const limit = read(path.join(memDir, caps.cgroup === 'v2' ? 'memory.max' : 'memory.limit_in_bytes'));
    expect(Number(limit)).toBe((32 + 96) * 2 ** 20);
    const cpuDir = cgroupDirOf(pid, 'cpu');
    if (caps.cgroup === 'v2') expect(read(path.join(cpuDir, 'cpu.max'))).toBe('50000 100000');
    else expect(read(path.join(cpuDir, 'cpu.cfs_quota_us'))).toBe('50000');
    expect(p1?.enforcement?.memory[0]).toEqual({ mechanism: `cgroup ${caps.cgroup} memory limit ${(32 + 96) * 2 ** 20} bytes (grant + host overhead)`, level: 'kernel' });
    expect(p1?.enforcement?.cpu).toEqual([{ mechanism: `cgroup ${caps.cgroup} CPU quota 0.5 cores`, level: 'kernel' }]);
    expect(p1?.enforcement?.isolation.map((l) => l.mechanism).join('\n')).toMatch(/warm pool\) and taken by this guest alone/);
    // Its usage is its host process's, as a cold process guest's (the process is its own), not the
    // linear memory its warm host (a shared host of one guest) would report.
    expect(p1?.usage?.level).toEqual({ memory: 'host', cpu: 'host' });
    expect(p1?.usage?.memoryBytes).toBeGreaterThan(8 * 2 ** 20);
    // The pool is refilled under a new placeholder.
    await warmHosts(c, 2);
    expect(Object.keys(uidsOf(stateDir)).filter((k) => k.startsWith('#warm-'))).toHaveLength(2);
  });

  it('a process with a network grant starts cold, leaving the warm hosts alone', { timeout: 60_000 }, async () => {
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    const warm = await warmHosts(c, 2);
    await c.start({ ...base, name: 'net', grants: { ...base.grants, network: { listen: [], connect: ['127.0.0.1:9'] } } });
    const pid = (await statusOf(c, 'net'))?.pid as number;
    seen.add(pid);
    expect(warm).not.toContain(pid);
    expect(await warmHosts(c, 2)).toEqual(warm);
    await c.stop('net', 2000);
  });

  it('replace-config restarts the guest in its warm host; the host survives an agent SIGKILL and is re-attached, its output logged', { timeout: 90_000 }, async () => {
    let c = await fx.connect(agent, { timeoutMs: 60_000 });
    const pid = (await statusOf(c, 'p1'))?.pid as number;
    const text = 'greeting 1\n';
    await c.putBlob(sha256Hex(text), Buffer.from(text));
    const config = { '/etc/hello.conf': sha256Hex(text) };
    await c.replaceConfig('p1', config, specDigest({ ...base, name: 'p1', config }));
    await waitFor(() => logOf('p1').includes('greeting 1, world!'), 10_000, 'p1 with its new config');
    const replaced = await statusOf(c, 'p1');
    expect([replaced?.pid, replaced?.restarts]).toEqual([pid, 1]); // a replace counts as a restart

    c.close();
    await fx.kill(agent, 'SIGKILL');
    expect(alive(pid)).toBe(true);
    agent = await fx.start({ stateDir });
    c = await fx.connect(agent, { timeoutMs: 60_000 });
    const p1 = await statusOf(c, 'p1');
    expect([p1?.state, p1?.pid, p1?.restarts]).toEqual(['running', pid, 1]);
    // Its output reaches its log as before (it logs a line a second).
    const lines = logOf('p1').split('\n').length;
    await waitFor(() => logOf('p1').split('\n').length >= lines + 2, 10_000, 'p1\'s output after the re-attach');
    // A re-attached guest's replace-config starts it afresh (a re-attached shared host takes no
    // new guest in this version): a host of its own again, under the same uid, with the new config.
    const again = 'greeting 2\n';
    await c.putBlob(sha256Hex(again), Buffer.from(again));
    const config2 = { '/etc/hello.conf': sha256Hex(again) };
    await c.replaceConfig('p1', config2, specDigest({ ...base, name: 'p1', config: config2 }));
    await waitFor(() => logOf('p1').includes('greeting 2, world!'), 10_000, 'p1 with its newer config');
    const fresh = (await statusOf(c, 'p1'))?.pid as number;
    seen.add(fresh);
    expect(alive(pid)).toBe(false);
    expect(procUid(fresh)).toBe(uidsOf(stateDir).p1);
    // The new agent runs process guests: its pool fills again, under the placeholders kept in the table.
    await warmHosts(c, 2);
  });

  it('a kernel OOM kill of a taken warm host after an agent SIGKILL is the guest\'s memory violation, at its own limit', { timeout: 90_000 }, async () => {
    let c = await fx.connect(agent, { timeoutMs: 60_000 });
    const warm = await warmHosts(c, 2);
    const hog = await uploadSpec(c, 'hog', guest('sleeper'), { grants: { memory: 16 << 20, network: { listen: [], connect: [] } }, restart: 'never' });
    await c.start(hog);
    const pid = (await statusOf(c, 'hog'))?.pid as number;
    expect(warm).toContain(pid);
    c.close();
    await fx.kill(agent, 'SIGKILL');
    agent = await fx.start({ stateDir });
    c = await fx.connect(agent, { timeoutMs: 60_000 });
    expect((await statusOf(c, 'hog'))?.pid).toBe(pid);
    const events: AgentEvent[] = [];
    await c.watch((e) => events.push(e));
    // A writer in the host's memory cgroup fills a tmpfs file charged to it: past the limit the
    // kernel kills the largest process of the cgroup, the warm host.
    const shm = `/dev/shm/lowcloud-warm-oom-${process.pid}`;
    onTestFinished(() => rmSync(shm, { force: true }));
    spawnSync('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && exec dd if=/dev/zero of="$2" bs=1M count=256 2>/dev/null', 'sh', cgroupDirOf(pid, 'memory'), shm]);
    await waitFor(() => events.some((e) => e.process === 'hog' && e.kind === 'died'), 20_000, 'the guest to end');
    rmSync(shm, { force: true });
    expect((await statusOf(c, 'hog'))?.lastExit).toEqual({ kind: 'violation', grant: 'memory', detail: `killed by the kernel: past the cgroup memory limit of ${(16 + 96) * 2 ** 20} bytes` });
    expect(events.filter((e) => e.process === 'hog').map((e) => [e.kind, e.grant ?? null])).toEqual([['grant-violated', 'memory'], ['died', null]]);
  });

  it('an agent with --warm-pool 0 keeps no warm host: its process starts are all cold', { timeout: 60_000 }, async () => {
    const offDir = path.join(fx.dir, 'off');
    const off = await fx.start({ stateDir: offDir, args: ['--warm-pool', '0'] });
    const c = await fx.connect(off, { timeoutMs: 60_000 });
    const q = await uploadSpec(c, 'q0', hello, { args: ['/etc/hello.conf', '60'] }, { '/etc/hello.conf': 'greeting 0\n' });
    await c.start({ ...q, name: 'q0' });
    await c.start({ ...q, name: 'q1' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(sharedHostPids(path.join(offDir, 'run', '.shared-hosts'))).toEqual([]);
    expect(Object.keys(uidsOf(offDir)).sort()).toEqual(['q0', 'q1']);
    const st = (await c.status()).processes;
    st.forEach((p) => seen.add(p.pid as number));
    expect(st.map((p) => p.enforcement?.isolation.some((l) => /warm pool/.test(l.mechanism)))).toEqual([false, false]);
    await fx.kill(off, 'SIGTERM');
  });

  it('a stop ends the warm host with its guest; the agent\'s SIGTERM ends its idle warm hosts', { timeout: 60_000 }, async () => {
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    const pid = (await statusOf(c, 'p1'))?.pid as number;
    await c.stop('p1', 2000);
    await waitFor(() => !alive(pid), 10_000, 'p1\'s host gone with it');
    const warm = await warmHosts(c, 2);
    c.close();
    await fx.kill(agent, 'SIGTERM');
    expect(warm.filter(alive)).toEqual([]);
  });
});
