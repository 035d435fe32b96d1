import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, runCli } from '../helpers/cli.js';
import { useAgentFixture, type RunningAgent } from '../helpers/agent.js';
import { alive, waitFor } from '../helpers/guests.js';
import { startLatencyProxy, type LatencyProxy } from '../helpers/latency-proxy.js';
import { withPadding } from '../helpers/wasm.js';
import { BLOB_CHUNK_BYTES, sha256Hex } from '@lowcloud/api';
import { freePort } from '../helpers/net.js';

// "A call is never made twice", counted where it counts: in each agent's audit log, which gets one
// line per accepted state-changing call. After every apply, the lines added on each machine must be
// exactly the calls the plan has for it, once each, however the links behaved and wherever an agent
// died (at the crash points of packages/node-agent/src/agent/test-hooks.ts).

const MACHINES = ['m1', 'm2', 'm3'] as const;
type Machine = (typeof MACHINES)[number];
const fx = useAgentFixture();
const key = ['--key', fx.keyFile];

/** The put-blob chunks an agent accepted for one blob, as their offsets in order. */
function chunks(stateDir: string, digest: string): number[] {
  return readFileSync(path.join(stateDir, 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { type: string; blob?: { digest: string; offset: number } })
    .filter((e) => e.type === 'put-blob' && e.blob?.digest === digest)
    .map((e) => e.blob?.offset as number);
}

/** The calls a plan is made of; the audit log also has put-blob chunks and segment starts. */
const CALLS = ['start', 'stop', 'replace-config'];

/** Accepted state-changing calls in an agent's audit log, as `<type> <process>`. */
function accepted(stateDir: string): string[] {
  const file = path.join(stateDir, 'audit.log');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { type: string; process?: string })
    .filter((e) => CALLS.includes(e.type))
    .map((e) => `${e.type} ${e.process}`);
}

/** Three agents, an infra file per step, plans between steps, and the audit count after each apply. */
class Fleet {
  readonly agents = new Map<Machine, RunningAgent>();
  readonly ports = new Map<Machine, number>();
  readonly via = new Map<Machine, number>();
  readonly dir: string;
  private seen = new Map<Machine, number>();

  constructor(readonly name: string) {
    this.dir = path.join(fx.dir, name);
    mkdirSync(path.join(this.dir, 'bin'), { recursive: true });
    mkdirSync(path.join(this.dir, 'config'));
    cpSync(path.join(repoRoot, 'examples/hello/bin/hello.wasm'), path.join(this.dir, 'bin/hello.wasm'));
  }

  stateDir(m: Machine): string {
    return path.join(this.dir, `state-${m}`);
  }

  async start(m: Machine, crash?: string, hooks: Record<string, string> = {}): Promise<void> {
    if (!this.ports.has(m)) this.ports.set(m, await freePort());
    const env: Record<string, string> = { ...(crash === undefined ? {} : { LOWCLOUD_TEST_CRASH: crash }), ...hooks };
    if (Object.keys(env).length > 0) env.LOWCLOUD_TEST_HOOKS = '1';
    this.agents.set(m, await fx.start({ stateDir: this.stateDir(m), port: this.ports.get(m) as number, env }));
  }

  async stopAll(): Promise<void> {
    for (const a of this.agents.values()) await fx.kill(a);
  }

  /** Step n of the fleet: which process runs where, with which config (its file's text). */
  write(n: number, processes: Record<string, { machine: Machine; config: string; memory?: string; binary?: string }>): string {
    const machines = MACHINES.map((m) => `  ${m}:\n    agent: ws://127.0.0.1:${this.via.get(m) ?? this.ports.get(m)}\n    key: ${this.agents.get(m)?.key}\n    capacity: { cpu: 2, memory: 1GiB }`).join('\n');
    const procs = Object.entries(processes).map(([name, p]) => {
      writeFileSync(path.join(this.dir, 'config', `${name}-${n}.conf`), p.config);
      return `  ${name}:\n    machine: ${p.machine}\n    binary: bin/${p.binary ?? 'hello.wasm'}\n    args: [/etc/hello.conf, "60"]\n    config: { /etc/hello.conf: config/${name}-${n}.conf }\n    grants: { memory: ${p.memory ?? '32MiB'} }\n    restart: always`;
    });
    const file = `infra-${n}.yaml`;
    writeFileSync(path.join(this.dir, file), `version: 1\nmachines:\n${machines}\nprocesses:${procs.length === 0 ? ' {}' : `\n${procs.join('\n')}`}\n`);
    return file;
  }

  /** Plan `from` -> `to`; returns the plan's calls per machine as `<type> <process>`. */
  async plan(from: string, to: string): Promise<Record<Machine, string[]>> {
    const r = await runCli(['plan', from, to, '--out', 'plan.json'], { cwd: this.dir });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(path.join(this.dir, 'plan.json'), 'utf8')) as { calls: { machine: Machine; call: string; process: string }[] };
    const out = { m1: [], m2: [], m3: [] } as Record<Machine, string[]>;
    for (const c of doc.calls) out[c.machine].push(`${c.call} ${c.process}`);
    return out;
  }

  apply(): ReturnType<typeof runCli> {
    return runCli(['apply', 'plan.json', ...key], { cwd: this.dir, timeoutMs: 90_000 });
  }

  /** The audit lines each agent added since the last look. */
  added(): Record<Machine, string[]> {
    const out = { m1: [], m2: [], m3: [] } as Record<Machine, string[]>;
    for (const m of MACHINES) {
      const all = accepted(this.stateDir(m));
      out[m] = all.slice(this.seen.get(m) ?? 0);
      this.seen.set(m, all.length);
    }
    return out;
  }

  async status(to: string): Promise<string> {
    // $LOWCLOUD_KEY: the key that signs calls, for a status that signs its reads too.
    return (await runCli(['status', to], { cwd: this.dir, timeoutMs: 60_000, env: { LOWCLOUD_KEY: key[1] as string } })).stdout.split('\n')[0] as string;
  }
}

const step1 = { p1: { machine: 'm1', config: 'one\n' }, p2: { machine: 'm2', config: 'two\n' }, p3: { machine: 'm3', config: 'three\n' } } as const;
const step2 = { p1: { machine: 'm1', config: 'one v2\n' }, p2: { machine: 'm2', config: 'two v2\n' }, p3: { machine: 'm3', config: 'three v2\n' } } as const;
// p1 removed (stop), p2 replaced (grants changed: stop + start), p3 config (replace-config), p4 new (start).
const step3 = { p2: { machine: 'm2', config: 'two v2\n', memory: '48MiB' }, p3: { machine: 'm3', config: 'three v3\n' }, p4: { machine: 'm1', config: 'four\n' } } as const;

describe('exactly one accepted call per planned call', () => {
  it('over slow links that cut the connection instead of delivering a call\'s reply (and every 3rd connection on m2)', async () => {
    const fleet = new Fleet('links');
    const proxies: LatencyProxy[] = [];
    try {
      for (const m of MACHINES) {
        await fleet.start(m);
        // Every reply saying a call changed something is lost the first two times on each link: the
        // worst moment, when the call is made and the client cannot know it.
        const p = await startLatencyProxy({ target: { host: '127.0.0.1', port: fleet.ports.get(m) as number }, delayMs: [20, 80], dropReplies: { match: /"changed":true/, count: 2 }, ...(m === 'm2' ? { dropEvery: 3 } : {}) });
        proxies.push(p);
        fleet.via.set(m, p.port);
      }
      // Starts, then a step with every kind of call (stop, replace: stop + start, replace-config, start).
      const files = [fleet.write(0, {}), fleet.write(1, step1), fleet.write(3, step3)];
      for (let i = 1; i < files.length; i++) {
        const planned = await fleet.plan(files[i - 1] as string, files[i] as string);
        const r = await fleet.apply();
        expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
        expect(fleet.added()).toEqual(planned);
        expect(await fleet.status(files[i] as string)).toMatch(/^In sync: \d process\(es\) match infra-\d\.yaml\.$/);
      }
      // The links really failed where it hurts.
      expect(proxies.map((p) => p.stats.repliesDropped)).toEqual([2, 2, 2]);
      expect(proxies[1]?.stats.dropped).toBeGreaterThan(0);
    } finally {
      for (const p of proxies) await p.close();
      await fleet.stopAll();
    }
  });

  it('a link lost while the agent still has its calls queued: the calls sent again after it meet the old ones landing, and each is made once', async () => {
    const fleet = new Fleet('queued');
    let proxy: LatencyProxy | null = null;
    try {
      // m1's starts take 1.5 s each, so the 17 starts (groups of at most 8 guest hosts: 8, 8, 1)
      // are still in its queue when the link goes: the first reply is cut, the client reconnects
      // 0.2 s later and reads a status that shows the first two groups; the old 17th start is
      // taken only after the second group, behind the client's new copy of it.
      await fleet.start('m1', undefined, { LOWCLOUD_TEST_SLOW_ACT: 'start:1500' });
      await fleet.start('m2');
      await fleet.start('m3');
      proxy = await startLatencyProxy({ target: { host: '127.0.0.1', port: fleet.ports.get('m1') as number }, delayMs: [2, 5], dropReplies: { match: /"changed":true/, count: 1 } });
      fleet.via.set('m1', proxy.port);
      const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`q${i}`, { machine: 'm1' as const, config: `q${i}\n` }]));
      const files = [fleet.write(0, {}), fleet.write(1, many)];
      const planned = await fleet.plan(files[0] as string, files[1] as string);
      const r = await fleet.apply();
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(fleet.added()).toEqual(planned);
      expect(proxy.stats.repliesDropped).toBe(1);
      expect(await fleet.status(files[1] as string)).toMatch(/^In sync: 17 process\(es\) match infra-1\.yaml\.$/);
    } finally {
      await proxy?.close();
      await fleet.stopAll();
    }
  });

  it('with agents killed before saving a call and after saving it but before replying: the re-run makes each planned call exactly once', async () => {
    const fleet = new Fleet('kills');
    try {
      for (const m of MACHINES) await fleet.start(m);
      const files = [fleet.write(0, {}), fleet.write(1, step1), fleet.write(2, step2), fleet.write(3, step3)];
      // Per step, where each machine's agent dies (none: it does not).
      const crashes: Record<Machine, string | undefined>[] = [
        { m1: 'after-save:start', m2: 'before-save:start', m3: undefined },
        { m1: 'before-save:replace-config', m2: undefined, m3: 'after-save:replace-config' },
        { m1: 'after-save:stop', m2: 'after-save:start', m3: 'before-save:replace-config' },
      ];
      for (let i = 1; i < files.length; i++) {
        const crash = crashes[i - 1] as Record<Machine, string | undefined>;
        for (const m of MACHINES) {
          if (crash[m] === undefined) continue;
          await fx.kill(fleet.agents.get(m) as RunningAgent);
          await fleet.start(m, crash[m]);
        }
        const planned = await fleet.plan(files[i - 1] as string, files[i] as string);
        const first = await fleet.apply();
        expect(first.code).toBe(1);
        for (const m of MACHINES) {
          const a = fleet.agents.get(m) as RunningAgent;
          if (crash[m] !== undefined) {
            // It died at its crash point (SIGKILL), not of anything else.
            await waitFor(() => a.child.exitCode !== null || a.child.signalCode !== null, 10_000, `the ${m} agent to die at ${crash[m]}`);
            expect(a.child.signalCode).toBe('SIGKILL');
            await fleet.start(m);
          } else expect(alive(a.pid)).toBe(true);
        }
        const rerun = await fleet.apply();
        expect(rerun.code, `${rerun.stdout}\n${rerun.stderr}`).toBe(0);
        expect(fleet.added()).toEqual(planned);
      }
      expect(await fleet.status(files[3] as string)).toBe('In sync: 3 process(es) match infra-3.yaml.');
    } finally {
      await fleet.stopAll();
    }
  });

  it('an upload cut by the agent dying after its second chunk resumes at its offset: every chunk is accepted once', async () => {
    const fleet = new Fleet('upload');
    try {
      // hello padded past two chunks: three chunks, the client sends up to three at once.
      const big = withPadding(readFileSync(path.join(fleet.dir, 'bin/hello.wasm')), 2.5 * BLOB_CHUNK_BYTES);
      const offsets = [0, BLOB_CHUNK_BYTES, 2 * BLOB_CHUNK_BYTES];
      expect(Math.ceil(big.length / BLOB_CHUNK_BYTES)).toBe(3);
      writeFileSync(path.join(fleet.dir, 'bin/big.wasm'), big);
      await fleet.start('m1', 'after-save:put-blob:2');
      await fleet.start('m2');
      await fleet.start('m3');
      const files = [fleet.write(0, {}), fleet.write(1, { p1: { machine: 'm1', config: 'one\n', binary: 'big.wasm' } })];
      const planned = await fleet.plan(files[0] as string, files[1] as string);
      expect((await fleet.apply()).code).toBe(1);
      const a = fleet.agents.get('m1') as RunningAgent;
      await waitFor(() => a.child.signalCode !== null, 10_000, 'the m1 agent to die after the second chunk');
      expect(chunks(fleet.stateDir('m1'), sha256Hex(big))).toEqual(offsets.slice(0, 2));
      await fleet.start('m1');
      const rerun = await fleet.apply();
      expect(rerun.code, `${rerun.stdout}\n${rerun.stderr}`).toBe(0);
      expect(chunks(fleet.stateDir('m1'), sha256Hex(big))).toEqual(offsets);
      expect(fleet.added()).toEqual(planned);
      expect(await fleet.status(files[1] as string)).toBe('In sync: 1 process(es) match infra-1.yaml.');
    } finally {
      await fleet.stopAll();
    }
  });
});
