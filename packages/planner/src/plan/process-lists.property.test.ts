import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ProcessSpec, ResolvedMachine } from '@lowcloud/api';
import { callsFor } from './calls.js';
import { diffStates } from './diff.js';
import { buildDocument } from './document.js';
import { documentText } from './document-text.js';
import { minimalPlanner } from './minimal.js';
import { listsOf } from './process-lists.js';
import type { PlanProcess, PlanState } from './types.js';

// The walk of two states' sorted lists (diffStates, callsFor, buildDocument with `lists`) against
// the walk of their tables: the same changes, calls and document on every pair, including names
// the lists path must hand back to the tables (index-like, `constructor`) and unsorted lists.
const MACHINES = ['m1', 'm2', 'm3'];
const machines: Record<string, ResolvedMachine> = Object.fromEntries(MACHINES.map((m) => [m, { name: m, agent: 'local', address: '127.0.0.1', capacity: {} }]));
const NAMES = ['kv', 'lb', 'web', 'web.2', 'db', 'dns', 'queue', 'q-1', '07'];
const ADDRESS = ['10.0.0.1', '10.0.0.2'];
const digestArb = fc.constantFrom('a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64));
// Spec digests are drawn, not computed, from a pool the args and env also name: a change then
// names other changed processes (diff.ts dependencyReasons), in B's order.
const SPEC_DIGESTS = ['1', '2', '3', '4', '5'].map((c) => c.repeat(64));
const namedArb = fc.constantFrom(...SPEC_DIGESTS);

const specArb = (name: string) =>
  fc
    .record({
      binary: digestArb,
      args: fc.array(fc.oneof(fc.constantFrom('-v', '--port'), namedArb), { maxLength: 3 }),
      env: fc.dictionary(fc.constantFrom('LOG', 'DEP'), fc.oneof(fc.constantFrom('info', 'debug'), namedArb), { maxKeys: 2 }),
      config: fc.dictionary(fc.constantFrom('/etc/a.conf', '/etc/b.conf'), digestArb, { maxKeys: 2 }),
      memory: fc.option(fc.constantFrom(16, 32), { nil: undefined }),
      connect: fc.array(fc.tuple(fc.constantFrom(...NAMES), fc.constantFrom(...ADDRESS)), { maxLength: 2 }),
      unwalled: fc.boolean(),
      restart: fc.constantFrom('always' as const, 'never' as const),
    })
    .map(
      (r): ProcessSpec => ({
        name,
        binary: r.binary,
        args: r.args,
        env: r.env,
        config: r.config,
        grants: {
          ...(r.memory === undefined ? {} : { memory: r.memory * 2 ** 20 }),
          network: { listen: [], connect: [...new Set(r.connect.map(([n, ip]) => `${n}@${ip}:7000`))].sort() },
        },
        restart: r.restart,
        ...(r.unwalled ? { allowUnwalled: true } : {}),
      }),
    );

interface Side {
  names: string[];
  procs: PlanProcess[];
}

function side(entries: PlanProcess[], sort: boolean): Side {
  const procs = sort ? [...entries].sort((x, y) => (x.name < y.name ? -1 : 1)) : entries;
  return { names: procs.map((p) => p.name), procs };
}

/**
 * Two sides of one fleet: each name in A, in B or in both; in both, the same spec or another, on
 * the same machine or another. Names index-like or `constructor` only in some pairs, so most
 * pairs take the lists' path.
 */
const pairArb: fc.Arbitrary<[Side, Side]> = fc
  .tuple(fc.uniqueArray(fc.constantFrom(...NAMES), { maxLength: 8 }), fc.constantFrom([], ['7'], ['10', 'constructor']))
  .chain(([plain, odd]) => {
    const names = [...plain, ...odd];
    const one = (n: string) =>
      fc.record({
        where: fc.constantFrom('a', 'b', 'both', 'both', 'both'),
        specA: specArb(n),
        specB: specArb(n),
        sameSpec: fc.boolean(),
        digestA: namedArb,
        digestB: fc.option(namedArb, { nil: undefined }),
        machineA: fc.constantFrom(...MACHINES),
        machineB: fc.constantFrom(...MACHINES),
        sealedA: fc.subarray(['env.DEP', 'config./etc/a.conf']),
        sealedB: fc.subarray(['env.DEP', 'config./etc/a.conf']),
      });
    return fc.tuple(fc.constant(names), fc.tuple(...names.map(one)), fc.boolean(), fc.boolean());
  })
  .map(([names, rs, sortA, sortB]) => {
    const xs: PlanProcess[] = [];
    const ys: PlanProcess[] = [];
    names.forEach((name, i) => {
      const r = rs[i] as (typeof rs)[number];
      const specB = r.sameSpec ? r.specA : r.specB;
      if (r.where !== 'b') xs.push({ name, machine: r.machineA, spec: r.specA, digest: r.digestA, sealed: r.sealedA });
      if (r.where !== 'a') ys.push({ name, machine: r.machineB, spec: specB, digest: r.digestB ?? r.digestA, sealed: r.sealedB });
    });
    return [side(xs, sortA), side(ys, sortB)];
  });

/** The side as a table only, and as the loader gives it: lists and a table in the lists' order. */
function states(s: Side, label: string): [PlanState & { label: string }, PlanState & { label: string }] {
  const table = () => Object.fromEntries(s.procs.map((p) => [p.name, p]));
  const withLists = {
    label,
    machines,
    processes: table(),
    lists: { names: s.names, machineOf: s.procs.map((p) => p.machine), digests: s.procs.map((p) => p.digest), at: (i: number) => s.procs[i] as PlanProcess },
  };
  return [{ label, machines, processes: table() }, withLists];
}

describe('a plan walked over sorted lists', () => {
  it('gives the same changes, calls and document as the walk of the tables', () => {
    fc.assert(
      fc.property(pairArb, ([x, y]) => {
        const [a, al] = states(x, 'a');
        const [b, bl] = states(y, 'b');
        // The same result or the same error (a name the table's prototype has fails there, as before).
        const same = (f: (a: PlanState & { label: string }, b: PlanState & { label: string }) => unknown) => {
          const run = (p: PlanState & { label: string }, q: PlanState & { label: string }) => {
            try {
              return { ok: JSON.stringify(f(p, q)) };
            } catch (err) {
              return { error: String(err) };
            }
          };
          const want = run(a, b);
          expect(run(al, bl)).toEqual(want);
          expect(run(al, b)).toEqual(want);
          expect(run(a, bl)).toEqual(want);
        };
        same((p, q) => diffStates(p, q));
        same((p, q) => diffStates(p, q).map((c) => callsFor(c, q)));
        same((p, q) => buildDocument(minimalPlanner.plan(p, q), p, q));
        // The document's text written from the lists (document-text.ts) is the one JSON.stringify
        // writes of the same document: before its tables are made, and after.
        for (const [p, q] of [[a, b], [al, bl], [al, b]] as const) {
          const doc = buildDocument(minimalPlanner.plan(p, q), p, q, { m2: 7 });
          const text = documentText(doc).join('');
          expect(text).toBe(JSON.stringify(buildDocument(minimalPlanner.plan(p, q), p, q, { m2: 7 }), null, 2));
          expect(JSON.stringify(doc, null, 2)).toBe(text);
          expect(documentText(doc).join('')).toBe(text);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("makes a machine's table of processes when it is read, and takes one written to it", () => {
    const names = ['a', 'b', 'c'];
    const s: PlanState = { machines, processes: {}, lists: { names, machineOf: ['m1', 'm2', 'm1'], digests: ['x', 'y', 'z'], at: () => ({}) as PlanProcess } };
    const doc = buildDocument({ planner: 'minimal', calls: [], changes: [] }, { ...s, label: 'a' }, { ...s, label: 'b' });
    const m1 = doc.machines.m1 as NonNullable<(typeof doc.machines)['m1']>;
    expect(Object.keys(m1)).toEqual(['agent', 'before']);
    expect(m1.before).toEqual({ a: 'x', c: 'z' });
    expect(doc.machines.m3?.before).toEqual({});
    const m2 = doc.machines.m2 as NonNullable<(typeof doc.machines)['m2']>;
    m2.before = { other: 'w' };
    expect(m2.before).toEqual({ other: 'w' });
    expect(Object.keys(m2)).toEqual(['agent', 'before']);
    expect(documentText(doc).join('')).toBe(JSON.stringify(doc, null, 2));
  });

  it('writes names and digests JSON must escape as JSON.stringify does', () => {
    const odd = ['a"q', 'b\\', 'c\u0001', 'd\u2028', 'e\ud800', 'é', 'plain'].sort();
    const m = ['m"1', 'm\\2'];
    const ms = Object.fromEntries(m.map((n) => [n, { name: n, agent: 'ws://"x"', address: '127.0.0.1', capacity: {} }]));
    const s: PlanState = { machines: ms, processes: {}, lists: { names: odd, machineOf: odd.map((_, i) => m[i % 2] as string), digests: odd.map((n) => `${n}-digest"`), at: () => ({}) as PlanProcess } };
    const doc = buildDocument({ planner: 'minimal', calls: [], changes: [] }, { ...s, label: 'a"b' }, { ...s, label: 'b' });
    const text = documentText(doc);
    expect(text.length).toBeGreaterThan(1);
    expect(text.join('')).toBe(JSON.stringify(doc, null, 2));
  });

  it('walks the lists only where they are the table in order', () => {
    const state = (names: string[]): PlanState => ({
      machines,
      processes: {},
      lists: { names, machineOf: names.map(() => 'm1'), digests: names.map(() => 'd'), at: () => ({}) as PlanProcess },
    });
    expect(listsOf(state(['a', 'b']))).toBeDefined();
    for (const names of [['b', 'a'], ['a', 'a'], ['1', 'a'], ['a', 'constructor']]) expect(listsOf(state(names))).toBeUndefined();
  });
});
