import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex, specDigest, type ProcessSpec } from '@lowcloud/api';
import { applyPlan, buildDocument, minimalPlanner } from '@lowcloud/planner';
import { useAgentFixture, type RunningAgent } from '../helpers/agent.js';
import { repoRoot } from '../helpers/cli.js';
import { startLatencyProxy, type LatencyProxy } from '../helpers/latency-proxy.js';

// Fleet-wide steps cost round trips, not machines x round trips: agents behind a proxy that adds
// 250 ms each way, and what the apply engine does with them. Behavioural assertions with wide
// margins (the machine is shared), not a benchmark: bench/fleet measures.
const fx = useAgentFixture();
const ONE_WAY_MS = 250;
const RTT = 2 * ONE_WAY_MS;
const MACHINES = 6;
const agents: RunningAgent[] = [];
const proxies: LatencyProxy[] = [];
const wasm = readFileSync(path.join(repoRoot, 'test/fixtures/guests/hello.wasm'));

beforeAll(async () => {
  for (let i = 0; i < MACHINES; i++) {
    const a = await fx.start({ stateDir: path.join(fx.dir, `state-m${i}`) });
    agents.push(a);
    proxies.push(await startLatencyProxy({ target: { host: '127.0.0.1', port: Number(new URL(a.url).port) }, delayMs: [ONE_WAY_MS, ONE_WAY_MS] }));
  }
});
afterAll(async () => {
  for (const p of proxies) await p.close();
});

type State = Parameters<typeof minimalPlanner.plan>[0];

function fleet(): { machines: State['machines']; endpoints: Record<string, { url: string; key: string }> } {
  const machines: State['machines'] = {};
  const endpoints: Record<string, { url: string; key: string }> = {};
  agents.forEach((a, i) => {
    const url = `ws://127.0.0.1:${proxies[i]?.port}`;
    machines[`m${i}`] = { name: `m${i}`, agent: url, key: a.key, address: '127.0.0.1', capacity: {} };
    endpoints[`m${i}`] = { url, key: a.key };
  });
  return { machines, endpoints };
}

/** `count` hello guests per listed machine (they print and exit: restart never). */
function state(machines: State['machines'], on: string[], count: number, tag: string): State {
  const processes: State['processes'] = {};
  for (const m of on) {
    for (let i = 0; i < count; i++) {
      const spec: ProcessSpec = { name: `${m}-${tag}${i}`, binary: sha256Hex(wasm), args: [], env: {}, config: {}, grants: { memory: 16 * 2 ** 20, network: { listen: [], connect: [] } }, restart: 'never' };
      processes[spec.name] = { name: spec.name, machine: m, spec, digest: specDigest(spec) };
    }
  }
  return { machines, processes };
}

type Doc = ReturnType<typeof buildDocument>;

/** The plan A -> B, changed by `edit` (a call the planner would not make). */
function planOf(a: State, b: State, edit: (doc: Doc) => Doc = (d) => d): Doc {
  return edit(buildDocument(minimalPlanner.plan(a, b), { ...a, label: 'a' }, { ...b, label: 'b', blobs: { [sha256Hex(wasm)]: 'hello.wasm' } }));
}

/** Applies A -> B, recording when each call was sent and answered. */
async function apply(a: State, b: State, endpoints: Record<string, { url: string; key: string }>, edit?: (doc: Doc) => Doc) {
  const doc = planOf(a, b, edit);
  const spans = new Map<string, { machine: string; start: number; end: number }>();
  const reporter = {
    event(e: { type: string; machine: string; process?: string }) {
      if (e.type === 'call-start') spans.set(e.process as string, { machine: e.machine, start: performance.now(), end: Infinity });
      if (e.type === 'call-done' && spans.has(e.process as string)) (spans.get(e.process as string) as { end: number }).end = performance.now();
    },
    close() {},
  };
  // A loaded machine (the whole suite on 2 cores) may take long for a guest start: no call is timed out for it.
  const result = await applyPlan(doc, { endpoints, signer: fx.operator, parallelism: 256, readFile: async () => wasm, reporter, timeoutMs: 120_000 });
  return { result, spans: [...spans.values()] };
}

/** The most calls in flight at one moment (over `spans`), and over how many machines at that moment. */
function mostInFlight(spans: { machine: string; start: number; end: number }[]): { calls: number; machines: number } {
  let best = { calls: 0, machines: 0 };
  for (const s of spans) {
    const open = spans.filter((o) => o.start <= s.start && o.end > s.start);
    if (open.length > best.calls) best = { calls: open.length, machines: new Set(open.map((o) => o.machine)).size };
  }
  return best;
}

/** How long at least one call was in flight: one after another, this would be the sum of the spans. */
function busy(spans: { start: number; end: number }[]): number {
  let total = 0;
  let until = -Infinity;
  for (const s of [...spans].sort((x, y) => x.start - y.start)) {
    if (s.end <= until) continue;
    total += s.end - Math.max(s.start, until);
    until = s.end;
  }
  return total;
}

describe('fleet-wide apply over slow links', () => {
  it('one call per machine: the machines are worked on at once, in a few round trips, not one machine after another', async () => {
    const { machines, endpoints } = fleet();
    const names = Object.keys(machines);
    const { result, spans } = await apply(state(machines, [], 0, 'p'), state(machines, names, 1, 'p'), endpoints);
    expect(result.ok).toBe(true);
    expect(result.calls.map((c) => c.status)).toEqual(names.map(() => 'ok'));
    // The machines' calls were in flight together: one machine after another, the time some call
    // was in flight would be the sum of their durations (each at least a round trip).
    expect(spans).toHaveLength(MACHINES);
    expect(spans.every((x) => x.end - x.start >= RTT * 0.9)).toBe(true);
    expect(busy(spans)).toBeLessThan(spans.reduce((t, x) => t + x.end - x.start, 0) / 2);
    expect(mostInFlight(spans).machines).toBeGreaterThanOrEqual(MACHINES / 2);
    // The result lists machines by name, whatever order they finished in.
    expect(Object.keys(result.machines)).toEqual(names);
  });

  it('many calls to one machine are pipelined over its one connection, each made once, in plan order', async () => {
    const { machines, endpoints } = fleet();
    const audit = () =>
      readFileSync(path.join(fx.dir, 'state-m0', 'audit.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; process?: string })
        .filter((e) => e.type === 'start');
    const before = audit().length;
    // What the test before left running, plus 12 guests on m0.
    const a = state(machines, Object.keys(machines), 1, 'p');
    const { result, spans } = await apply(a, { machines, processes: { ...a.processes, ...state(machines, ['m0'], 12, 'q').processes } }, endpoints);
    expect(result.ok).toBe(true);
    expect(result.calls.every((c) => c.status === 'ok')).toBe(true);
    // Sent without waiting for each other's replies (the agent took them in order, each against
    // the generation the one before it left).
    expect(mostInFlight(spans).calls).toBeGreaterThanOrEqual(4);
    expect(audit().slice(before).map((e) => e.process).filter((p) => p?.startsWith('m0-q'))).toEqual(result.calls.map((c) => c.process));
  });

  it('a fleet larger than the parallelism: each machine is connected to once, its connection kept from the check to its calls', async () => {
    // Agents of its own (the other tests' leave guests running), without the proxy: connections are counted, not timed.
    const own = await Promise.all([0, 1, 2].map((i) => fx.start({ stateDir: path.join(fx.dir, `state-k${i}`) })));
    const machines: State['machines'] = Object.fromEntries(own.map((a, i) => [`k${i}`, { name: `k${i}`, agent: a.url, key: a.key, address: '127.0.0.1', capacity: {} }]));
    const endpoints = Object.fromEntries(own.map((a, i) => [`k${i}`, { url: a.url, key: a.key }]));
    const hellos = async () => Promise.all(own.map(async (ag) => Number(/^lowcloud_agent_calls_total\{type="hello",result="ok"\} (\S+)$/m.exec(await (await fetch(ag.metricsUrl as string)).text())?.[1] ?? 0)));
    const before = await hellos();
    const doc = planOf(state(machines, [], 0, 'k'), state(machines, Object.keys(machines), 2, 'k'));
    const result = await applyPlan(doc, { endpoints, signer: fx.operator, parallelism: 1, readFile: async () => wasm, reporter: { event() {}, close() {} }, timeoutMs: 120_000 });
    expect(result.ok).toBe(true);
    expect((await hellos()).map((n, i) => n - (before[i] as number))).toEqual([1, 1, 1]);
  });

  it('a call that fails stops its machine: the calls pipelined behind it are refused unmade and reported not run', async () => {
    const { machines, endpoints } = fleet();
    const before = state(machines, Object.keys(machines), 1, 'p');
    const after = { machines, processes: { ...before.processes, ...state(machines, ['m1'], 3, 'r').processes } };
    // First on m1, a replace-config the agent refuses (the spec digest it names is not the one the config gives).
    const bogus = (doc: Doc): Doc => ({ ...doc, calls: [{ machine: 'm1', call: 'replace-config', process: 'm1-p0', phase: 2, config: {}, specDigest: 'f'.repeat(64) }, ...doc.calls] });
    const { result, spans } = await apply(before, after, endpoints, bogus);
    expect(result.ok).toBe(false);
    expect(result.calls.map((c) => `${c.call} ${c.process} ${c.status}`)).toEqual(['replace-config m1-p0 failed', 'start m1-r0 not-run', 'start m1-r1 not-run', 'start m1-r2 not-run']);
    expect(result.calls[0]?.error?.message).toMatch(/only config may change this way/);
    // They were sent before the refusal came back (pipelined), and the agent made none of them.
    expect(spans.filter((x) => x.machine === 'm1')).toHaveLength(4);
    expect(result.calls.slice(1).every((c) => c.error === undefined)).toBe(true);
    const c = await fx.connect(agents[1] as RunningAgent);
    expect((await c.status()).processes.map((p) => p.name)).toEqual(['m1-p0']);
    // Re-run without the bad call: the starts are made then.
    const rerun = await apply(before, after, endpoints);
    expect(rerun.result.calls.map((x) => x.status)).toEqual(['ok', 'ok', 'ok']);
  });
});
