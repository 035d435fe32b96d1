import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { specDigest, type ProcessSpec, type ResolvedMachine } from '@lowcloud/api';
import { blueGreenPlanner } from './blue-green.js';
import { buildDocument } from './document.js';
import { minimalPlanner } from './minimal.js';
import type { PlanCall, PlanState, Planner } from './types.js';

const MACHINES = ['m1', 'm2', 'm3'];
const machines: Record<string, ResolvedMachine> = Object.fromEntries(MACHINES.map((m) => [m, { name: m, agent: 'local', address: '127.0.0.1', capacity: {} }]));

const digestArb = fc.constantFrom('a1', 'b2', 'c3');
const specArb = (name: string) =>
  fc.record({
    binary: digestArb,
    args: fc.array(fc.constantFrom('-v', '--port', '7000'), { maxLength: 2 }),
    env: fc.dictionary(fc.constantFrom('LOG', 'MODE'), fc.constantFrom('info', 'debug'), { maxKeys: 2 }),
    config: fc.dictionary(fc.constantFrom('/etc/a.conf', '/etc/b.conf'), digestArb, { maxKeys: 2 }),
    memory: fc.option(fc.constantFrom(16, 32, 64), { nil: undefined }),
    listen: fc.array(fc.constantFrom(7000, 7001), { maxLength: 1 }),
    restart: fc.constantFrom('always' as const, 'on-failure' as const, 'never' as const),
  }).map(
    (r): ProcessSpec => ({
      name,
      binary: r.binary,
      args: r.args,
      env: r.env,
      config: r.config,
      grants: { ...(r.memory === undefined ? {} : { memory: r.memory * 2 ** 20 }), network: { listen: r.listen, connect: [] } },
      restart: r.restart,
    }),
  );

const stateArb: fc.Arbitrary<PlanState> = fc
  .uniqueArray(fc.constantFrom('kv', 'lb', 'web', 'db', 'dns', 'queue'), { maxLength: 6 })
  .chain((names) => fc.tuple(fc.constant(names), fc.array(fc.constantFrom(...MACHINES), { minLength: names.length, maxLength: names.length }), fc.tuple(...names.map((n) => specArb(n)))))
  .map(([names, ms, specs]) => {
    const processes: PlanState['processes'] = {};
    names.forEach((n, i) => {
      const spec = specs[i] as ProcessSpec;
      processes[n] = { name: n, machine: ms[i] as string, spec, digest: specDigest(spec) };
    });
    return { machines, processes };
  });

/** What an agent fleet does with the calls: refuses impossible ones, so a wrong plan fails loudly. */
function simulate(a: PlanState, calls: PlanCall[]): Map<string, { machine: string; digest: string }> {
  // Keyed by machine/name: two instances of one name may briefly coexist on different machines (a move).
  const fleet = new Map<string, { digest: string; spec: ProcessSpec }>();
  for (const p of Object.values(a.processes)) fleet.set(`${p.machine}/${p.name}`, { digest: p.digest, spec: p.spec });
  for (const c of calls) {
    const key = `${c.machine}/${c.process}`;
    if (c.call === 'start') {
      if (fleet.has(key)) throw new Error(`start ${key}: already running`);
      if (c.spec === undefined || c.specDigest !== specDigest(c.spec)) throw new Error(`start ${key}: bad spec`);
      fleet.set(key, { digest: c.specDigest, spec: c.spec });
    } else if (c.call === 'stop') {
      if (!fleet.has(key)) throw new Error(`stop ${key}: not running`);
      fleet.delete(key);
    } else {
      const cur = fleet.get(key);
      if (cur === undefined || c.config === undefined || c.specDigest === undefined) throw new Error(`replace-config ${key}: not running`);
      const spec = { ...cur.spec, config: c.config };
      if (specDigest(spec) !== c.specDigest) throw new Error(`replace-config ${key}: changes more than config`);
      fleet.set(key, { digest: c.specDigest, spec });
    }
  }
  const out = new Map<string, { machine: string; digest: string }>();
  for (const [key, v] of fleet) {
    const [machine, name] = key.split('/') as [string, string];
    if (out.has(name)) throw new Error(`${name} runs on two machines after the plan`);
    out.set(name, { machine, digest: v.digest });
  }
  return out;
}

function expected(b: PlanState): Map<string, { machine: string; digest: string }> {
  return new Map(Object.values(b.processes).map((p) => [p.name, { machine: p.machine, digest: p.digest }]));
}

/** Fewest calls any plan can use: new 1, removed 1, config-only 1, replaced 2, moved 2, unchanged 0. */
function lowerBound(a: PlanState, b: PlanState): number {
  let n = 0;
  for (const name of new Set([...Object.keys(a.processes), ...Object.keys(b.processes)])) {
    const x = a.processes[name];
    const y = b.processes[name];
    if (x === undefined || y === undefined) n += 1;
    else if (x.machine !== y.machine) n += 2;
    else if (x.digest === y.digest) n += 0;
    else if (specDigest({ ...x.spec, config: y.spec.config }) === y.digest) n += 1;
    else n += 2;
  }
  return n;
}

const pair = fc.tuple(stateArb, stateArb);
/** Generated cases per property and planner: docs/cli.md states this number. */
const RUNS = 400;

describe.each<[string, Planner]>([
  ['minimal', minimalPlanner],
  ['blue-green', blueGreenPlanner],
])('%s planner', (_name, planner) => {
  it('applying plan(A, B) to A yields exactly B', () => {
    fc.assert(fc.property(pair, ([a, b]) => {
      expect(simulate(a, planner.plan(a, b).calls)).toEqual(expected(b));
    }), { numRuns: RUNS });
  });

  it('uses exactly the lower bound of calls', () => {
    fc.assert(fc.property(pair, ([a, b]) => {
      expect(planner.plan(a, b).calls).toHaveLength(lowerBound(a, b));
    }), { numRuns: RUNS });
  });

  it('plan(A, A) is empty', () => {
    fc.assert(fc.property(stateArb, (a) => {
      expect(planner.plan(a, a)).toMatchObject({ calls: [], changes: [] });
    }), { numRuns: RUNS });
  });

  it('is deterministic, whatever the key order of the inputs', () => {
    fc.assert(
      fc.property(pair, ([a, b]) => {
        const reversed: PlanState = { machines: b.machines, processes: Object.fromEntries(Object.entries(b.processes).reverse()) };
        const d1 = buildDocument(planner.plan(a, b), { ...a, label: 'a' }, { ...b, label: 'b' });
        const d2 = buildDocument(planner.plan(a, reversed), { ...a, label: 'a' }, { ...reversed, label: 'b' });
        expect(JSON.stringify(d2)).toBe(JSON.stringify(d1));
      }),
      { numRuns: RUNS },
    );
  });

  it('runs every stop that frees a machine before any start on that machine (minimal)', () => {
    fc.assert(
      fc.property(pair, ([a, b]) => {
        const calls = planner.plan(a, b).calls;
        const phases = calls.map((c) => c.phase);
        expect([...phases].sort((x, y) => x - y)).toEqual(phases);
        if (planner === minimalPlanner) {
          const lastStop = calls.map((c) => c.call).lastIndexOf('stop');
          const firstStart = calls.map((c) => c.call).indexOf('start');
          if (lastStop >= 0 && firstStart >= 0) expect(lastStop).toBeLessThan(firstStart);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe('blue-green', () => {
  const spec = (name: string, memory: number): ProcessSpec => ({ name, binary: 'a1', args: [], env: {}, config: {}, grants: { memory, network: { listen: [], connect: [] } }, restart: 'always' });
  const state = (machine: string, memory: number, caps: Record<string, number>): PlanState => ({
    machines: Object.fromEntries(Object.entries(caps).map(([m, c]) => [m, { name: m, agent: 'local', address: '127.0.0.1', capacity: { memory: c } }])),
    processes: { kv: { name: 'kv', machine, spec: spec('kv', memory), digest: specDigest(spec('kv', memory)) } },
  });

  it('starts a moved process on its new machine before stopping the old one when there is room', () => {
    const p = blueGreenPlanner.plan(state('m1', 64, { m1: 128, m2: 128 }), state('m2', 64, { m1: 128, m2: 128 }));
    expect(p.calls.map((c) => `${c.call} ${c.machine}`)).toEqual(['start m2', 'stop m1']);
    expect(p.changes[0]?.note).toBeUndefined();
  });

  it('falls back to stop-then-start when the new machine has no room, and says why', () => {
    const p = blueGreenPlanner.plan(state('m1', 64, { m1: 128, m2: 32 }), state('m2', 64, { m1: 128, m2: 32 }));
    expect(p.calls.map((c) => `${c.call} ${c.machine}`)).toEqual(['stop m1', 'start m2']);
    expect(p.changes[0]?.note).toBe('no room on m2 to run both (memory capacity); stop then start');
  });
});
