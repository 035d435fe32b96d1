import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readlinkSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { probeCapabilities } from '@lowcloud/sandbox';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { alive, guest, waitFor } from '../helpers/guests.js';
import { machineFacts } from '../helpers/machine-facts.js';

/**
 * The wall around agent guests (issue 9): each guest host has its own uid, no privileges, only its
 * own files; the state directory is private.
 */
const fx = useAgentFixture();
let agent: RunningAgent | null = null;

const status = (pid: number) => readFileSync(`/proc/${pid}/status`, 'utf8');
const field = (s: string, k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(s)?.[1]?.trim().split(/\s+/) ?? [];

/** Run a command as `uid` (no groups), outside any wall: what a process of that uid can see. */
function asUid(uid: number, cmd: string[]): { code: number | null; out: string } {
  const r = spawnSync('/usr/bin/setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', '--', ...cmd], { env: {} });
  return { code: r.status, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

describe('agent guests run inside the kernel wall', () => {
  it('an existing state directory readable by others is tightened at start, and the log says so', async () => {
    mkdirSync(fx.stateDir, { recursive: true, mode: 0o755 });
    chmodSync(fx.stateDir, 0o755);
    writeFileSync(path.join(fx.stateDir, 'state.json'), JSON.stringify({ generation: 0, processes: {} }), { mode: 0o644 });
    chmodSync(path.join(fx.stateDir, 'state.json'), 0o644);
    // The agent's own output, to see the line it logs about it.
    const first = await fx.start();
    await fx.kill(first);
    expect(first.output()).toMatch(/state directory .* was readable by others; tightened \. 755 -> 700, state\.json 644 -> 600/);
    expect(statSync(fx.stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(fx.stateDir, 'state.json')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(fx.stateDir, 'agent.key')).mode & 0o777).toBe(0o600);
    agent = await fx.start();
    const c = await fx.connect(agent);
    await c.start(await uploadSpec(c, 'probe', guest('sleeper')));
    expect(statSync(path.join(fx.stateDir, 'state.json')).mode & 0o777).toBe(0o600);
    for (const d of ['blobs', 'logs', 'run', 'run/probe']) expect(statSync(path.join(fx.stateDir, d)).mode & 0o077, d).toBe(0);
    await c.stop('probe', 1000);
    c.close();
  });

  it('each guest host: its own non-zero uid, no capabilities, no_new_privs, seccomp; /data is its own, 0700', async ({ skip }) => {
    const caps = await probeCapabilities();
    // The machine's own fact decides, not the probe under test: a wall that runs here must be used.
    const facts = machineFacts();
    if (facts.root && facts.wall) expect(caps.wall, `bubblewrap runs here as root, yet the sandbox's probe says: ${caps.unavailable.wall ?? ''}`).toBe('root');
    if (caps.wall !== 'root') return skip(`the wall with per-guest uids needs root and bubblewrap here (wall: ${caps.wall ?? 'none'}; ${caps.unavailable.wall ?? 'not root'}); guests run as the agent's uid`);
    const a = agent as RunningAgent;
    const c = await fx.connect(a);
    const grants = { memory: 32 << 20, disk: 1 << 20, network: { listen: [], connect: [] } };
    await c.start(await uploadSpec(c, 'one', guest('sleeper'), { args: ['60'], grants }));
    await c.start(await uploadSpec(c, 'two', guest('sleeper'), { args: ['60'], grants }));
    const st = await c.status();
    const pid = (n: string) => st.processes.find((p) => p.name === n)?.pid as number;
    const [one, two] = [pid('one'), pid('two')];
    // `start` answers once the guest host's pid is known; it may still be on its way through
    // bubblewrap and setpriv (root) to the Node.js guest host.
    const hosting = (p: number) => {
      try {
        return readlinkSync(`/proc/${p}/exe`) === realpathSync(process.execPath);
      } catch {
        return false;
      }
    };
    await waitFor(() => hosting(one) && hosting(two), 10_000, 'both guest hosts running');
    const uids = [one, two].map((p) => Number(field(status(p), 'Uid')[0]));
    for (const p of [one, two]) {
      const s = status(p);
      expect(new Set(field(s, 'Uid')).size).toBe(1);
      // All five capability sets docs/security.md names: effective, permitted, inheritable, bounding, ambient.
      for (const set of ['CapEff', 'CapPrm', 'CapInh', 'CapBnd', 'CapAmb']) expect(field(s, set), set).toEqual(['0000000000000000']);
      expect(field(s, 'NoNewPrivs')).toEqual(['1']);
      expect(field(s, 'Seccomp')).toEqual(['2']);
    }
    // lowcloud's own range (node-agent uids.ts), outside systemd's DynamicUser= range and every subordinate range.
    expect(uids[0]).toBeGreaterThanOrEqual(2046820352);
    expect(uids[0]).toBeLessThanOrEqual(2046885886);
    expect(uids[1]).not.toBe(uids[0]);
    const data = path.join(fx.stateDir, 'data', 'one');
    expect(statSync(data).uid).toBe(uids[0]);
    expect(statSync(data).mode & 0o777).toBe(0o700);
    expect(st.processes.find((p) => p.name === 'one')?.enforcement?.isolation?.[0]).toMatchObject({ level: 'kernel' });

    // A process with guest one's uid, looking through /proc/PID/root: its own data is there, the
    // agent's key, state.json and guest two's data are not; on the host they are not its to read.
    writeFileSync(path.join(fx.stateDir, 'data', 'two', 'private'), 'two\n');
    writeFileSync(path.join(data, 'mine'), 'one\n');
    const via = (p: string) => `/proc/${one}/root${p}`;
    expect(asUid(uids[0] as number, ['cat', via(path.join(data, 'mine'))]).out).toBe('one\n');
    for (const target of [path.join(fx.stateDir, 'agent.key'), path.join(fx.stateDir, 'state.json'), path.join(fx.stateDir, 'data', 'two', 'private'), '/etc/shadow']) {
      const inside = asUid(uids[0] as number, ['cat', via(target)]);
      expect(inside.code, `${target} through /proc/${one}/root: ${inside.out}`).not.toBe(0);
      expect(inside.out).toMatch(/No such file or directory/);
      const host = asUid(uids[0] as number, ['cat', target]);
      expect(host.code, `${target} on the host: ${host.out}`).not.toBe(0);
    }
    expect(readFileSync(path.join(fx.stateDir, 'uids.json'), 'utf8')).toContain(`"one": ${uids[0]}`);
    expect(statSync(path.join(fx.stateDir, 'uids.json')).mode & 0o777).toBe(0o600);

    // The agent dies and comes back: same pids (re-attached), and a restarted process keeps its uid.
    await fx.kill(a, 'SIGKILL');
    expect(alive(one) && alive(two)).toBe(true);
    agent = await fx.start();
    const c2 = await fx.connect(agent);
    const st2 = await c2.status();
    expect(st2.processes.map((p) => p.pid).sort()).toEqual([one, two].sort());
    await c2.stop('one', 1000);
    await c2.start(await uploadSpec(c2, 'one', guest('sleeper'), { args: ['60'], grants }));
    let again = 0;
    await waitFor(async () => {
      again = (await c2.status()).processes.find((p) => p.name === 'one')?.pid ?? 0;
      return again > 0 && again !== one && hosting(again);
    }, 10_000, 'guest one to run again');
    expect(Number(field(status(again), 'Uid')[0])).toBe(uids[0]);
    // A new name never gets another process's uid, not even one that is stopped (its data stays its own).
    await c2.stop('one', 1000);
    await c2.start(await uploadSpec(c2, 'three', guest('sleeper'), { args: ['60'], grants }));
    let third = 0;
    await waitFor(async () => {
      third = (await c2.status()).processes.find((p) => p.name === 'three')?.pid ?? 0;
      return third > 0 && hosting(third);
    }, 10_000, 'guest three running');
    const uid3 = Number(field(status(third), 'Uid')[0]);
    expect(uid3).toBeGreaterThanOrEqual(2046820352);
    expect([uids[0], uids[1]]).not.toContain(uid3);
    await c2.stop('three', 1000);
    await c2.stop('two', 1000);
    c.close();
    c2.close();
  });
});
