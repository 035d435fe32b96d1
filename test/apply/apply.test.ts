import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentStatus } from '@lowcloud/api';
import { repoRoot, runCli } from '../helpers/cli.js';
import { useAgentFixture, type RunningAgent } from '../helpers/agent.js';
import { tempGitRepo } from '../helpers/git.js';
import { alive } from '../helpers/guests.js';
import { startLatencyProxy, type LatencyProxy } from '../helpers/latency-proxy.js';
import { freePort } from '../helpers/net.js';

const fx = useAgentFixture();
const repo = tempGitRepo();
const MACHINES = ['m1', 'm2', 'm3'] as const;
const agents = new Map<string, RunningAgent>();
const ports = new Map<string, number>();
const proxies: LatencyProxy[] = [];
const guestPids = new Set<number>();

async function start(m: string): Promise<void> {
  agents.set(m, await fx.start({ stateDir: path.join(fx.dir, `state-${m}`), port: ports.get(m) as number }));
}

/** The infra file: one hello process per machine, with its own config; `via` = agent URL per machine. */
function writeInfra(configs: Record<string, string>, via: (m: string) => string = (m) => `ws://127.0.0.1:${ports.get(m)}`): void {
  const machines = MACHINES.map((m) => `  ${m}:\n    agent: ${via(m)}\n    key: ${agents.get(m)?.key}\n    capacity: { cpu: 2, memory: 1GiB }`).join('\n');
  const processes = MACHINES.map(
    (m, i) => `  p${i + 1}:\n    machine: ${m}\n    binary: bin/hello.wasm\n    args: [/etc/hello.conf, "60"]\n    config: { /etc/hello.conf: config/p${i + 1}.conf }\n    grants: { memory: 32MiB, disk: 1MiB }\n    restart: always`,
  ).join('\n');
  writeFileSync(path.join(repo.dir, 'infra.yaml'), `version: 1\nmachines:\n${machines}\nprocesses:\n${processes}\n`);
  for (const [name, text] of Object.entries(configs)) writeFileSync(path.join(repo.dir, 'config', `${name}.conf`), text);
}

async function pids(): Promise<Record<string, number | null>> {
  return Object.fromEntries(Object.entries(await live()).map(([k, v]) => [k, v.pid]));
}

/** Each process's pid and restart count, by machine/process. */
async function live(): Promise<Record<string, { pid: number | null; restarts: number }>> {
  const out: Record<string, { pid: number | null; restarts: number }> = {};
  for (const [m, a] of agents) {
    const c = await fx.connect(a);
    const st: AgentStatus = await c.status();
    c.close();
    for (const p of st.processes) {
      out[`${m}/${p.name}`] = { pid: p.pid, restarts: p.restarts };
      if (p.pid !== null) guestPids.add(p.pid);
    }
  }
  return out;
}

const key = () => ['--key', fx.keyFile];

beforeAll(async () => {
  for (const m of MACHINES) {
    ports.set(m, await freePort());
    await start(m);
  }
  mkdirSync(path.join(repo.dir, 'bin'));
  mkdirSync(path.join(repo.dir, 'config'));
  cpSync(path.join(repoRoot, 'examples/hello/bin/hello.wasm'), path.join(repo.dir, 'bin/hello.wasm'));
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  // The agents go first, or they would restart the guests killed here (restart: always).
  for (const a of agents.values()) await fx.kill(a);
  for (const pid of guestPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  repo.remove();
});

describe('apply: from committed files to running agents', () => {
  it('brings three agents to the first commit, then applies the second: only the changed process restarts', async () => {
    writeInfra({ p1: 'one\n', p2: 'two\n', p3: 'three\n' });
    repo.commit('first');
    const first = await runCli(['up', 'infra.yaml', ...key()], { cwd: repo.dir });
    expect(first.stderr).not.toContain('FAILED');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('Apply complete: 3 call(s) made, 0 already done');
    const before = await live();
    expect(Object.values(before).every((p) => p.pid !== null)).toBe(true);

    writeInfra({ p1: 'one\n', p2: 'two, changed\n', p3: 'three\n' });
    repo.commit('second');
    const second = await runCli(['apply', '--base', 'HEAD~1', 'infra.yaml', ...key()], { cwd: repo.dir });
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('~ replace-config p2');
    expect(second.stdout).toContain('Apply complete: 1 call(s) made, 0 already done');
    // p2 restarted once (in its own guest host: a process guest's config change keeps its pid); the others untouched.
    const after = await live();
    const p2 = before['m2/p2'] as { pid: number; restarts: number };
    expect(after).toEqual({ ...before, 'm2/p2': { pid: p2.pid, restarts: p2.restarts + 1 } });
    const status = await runCli(['status', 'infra.yaml', ...key()], { cwd: repo.dir });
    expect(status.stdout.split('\n')[0]).toBe('In sync: 3 process(es) match infra.yaml.');
  });

  it('a plan applied twice: the second time nothing is done', async () => {
    writeInfra({ p1: 'one v2\n', p2: 'two, changed\n', p3: 'three\n' });
    repo.commit('third');
    expect((await runCli(['plan', '--base', 'HEAD~1', 'infra.yaml', '--out', 'plan.json'], { cwd: repo.dir })).code).toBe(0);
    const once = await runCli(['apply', 'plan.json', ...key()], { cwd: repo.dir });
    expect(once.stdout).toContain('Apply complete: 1 call(s) made, 0 already done');
    const twice = await runCli(['apply', 'plan.json', ...key()], { cwd: repo.dir });
    expect(twice.code).toBe(0);
    expect(twice.stdout).toContain('Apply complete: 0 call(s) made, 1 already done');
  });

  it('a stale plan is refused before any call, naming what moved', async () => {
    writeInfra({ p1: 'one v3\n', p2: 'two, changed\n', p3: 'three\n' });
    repo.commit('fourth');
    await runCli(['plan', '--base', 'HEAD~1', 'infra.yaml', '--out', 'stale.json'], { cwd: repo.dir });
    // Someone else changes p1 first.
    writeInfra({ p1: 'one, by someone else\n', p2: 'two, changed\n', p3: 'three\n' });
    expect((await runCli(['up', 'infra.yaml', ...key()], { cwd: repo.dir })).code).toBe(0);
    const before = await pids();
    const r = await runCli(['apply', 'stale.json', ...key()], { cwd: repo.dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: the plan is stale: these machines changed since it was made; plan again\nm1: process p1 is [0-9a-f]{12}, the plan expects [0-9a-f]{12} or [0-9a-f]{12}\n$/);
    expect(await pids()).toEqual(before);
    writeInfra({ p1: 'one v3\n', p2: 'two, changed\n', p3: 'three\n' });
    expect((await runCli(['up', 'infra.yaml', ...key()], { cwd: repo.dir })).code).toBe(0);
  });

  it('an unreachable agent is reported, the others proceed, and re-running completes it', async () => {
    writeInfra({ p1: 'one v4\n', p2: 'two v4\n', p3: 'three v4\n' });
    repo.commit('fifth');
    await fx.kill(agents.get('m3') as RunningAgent);
    const partial = await runCli(['apply', '--base', 'HEAD~1', 'infra.yaml', ...key()], { cwd: repo.dir });
    expect(partial.code).toBe(1);
    expect(partial.stdout).toContain('Apply FAILED: 2 call(s) made');
    expect(partial.stdout).toMatch(/m3 +FAILED/);
    expect(partial.stdout).toContain('Re-run the same command to resume');
    await start('m3');
    const rerun = await runCli(['apply', '--base', 'HEAD~1', 'infra.yaml', ...key()], { cwd: repo.dir });
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toContain('Apply complete: 1 call(s) made, 2 already done');
  });

  it('across slow and flaky links (50-150 ms each way, drops) the apply converges and shows per-machine durations', async () => {
    for (const m of MACHINES) {
      const p = await startLatencyProxy({ target: { host: '127.0.0.1', port: ports.get(m) as number }, delayMs: [50, 150], ...(m === 'm2' ? { dropFirst: 1, dropEvery: 3 } : {}) });
      proxies.push(p);
      ports.set(`${m}-proxy`, p.port);
    }
    writeInfra({ p1: 'one v5\n', p2: 'two v5\n', p3: 'three v5\n' }, (m) => `ws://127.0.0.1:${ports.get(`${m}-proxy`)}`);
    repo.commit('sixth: through proxies');
    writeInfra({ p1: 'one v6\n', p2: 'two v6\n', p3: 'three v6\n' }, (m) => `ws://127.0.0.1:${ports.get(`${m}-proxy`)}`);
    repo.commit('seventh');
    const audited = () => MACHINES.map((m) => readFileSync(path.join(fx.dir, `state-${m}`, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; process?: string }).filter((e) => ['start', 'stop', 'replace-config'].includes(e.type)));
    const before = audited().map((a) => a.length);
    const r = await runCli(['up', 'infra.yaml', ...key()], { cwd: repo.dir, timeoutMs: 90_000 });
    expect(r.stdout).toContain('Apply complete: 3 call(s) made');
    // What the agents accepted, not what the CLI says: one replace-config each, once.
    expect(audited().map((a, i) => a.slice(before[i]).map((e) => `${e.type} ${e.process}`))).toEqual([['replace-config p1'], ['replace-config p2'], ['replace-config p3']]);
    expect(r.stdout).toMatch(/ {2}m1 +ok +1 call\(s\) +\d/);
    expect(r.stdout).toMatch(/ {2}m2 +ok +1 call\(s\) +\d/);
    expect(r.code).toBe(0);
    const status = await runCli(['status', 'infra.yaml', ...key()], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(status.stdout.split('\n')[0]).toBe('In sync: 3 process(es) match infra.yaml.');
    // The flaky link really dropped connections on the way.
    expect(proxies[1]?.stats.dropped).toBeGreaterThan(0);
  });
  // An agent killed in the middle of an apply, at exact points (before a call is saved, after it is
  // saved but before the reply), and the exact count of calls made: test/apply/exactly-once.test.ts.
});
