import { PlanFormatError } from '../errors.js';
import { callBlobs } from './calls.js';
import { listsOf } from './process-lists.js';
import type { Change, Plan, PlanCall, PlanState } from './types.js';
import { own } from '../own.js';
import { stateDigest } from './state-digest.js';

export { stateDigest, stateDigestOf } from './state-digest.js';

/** The major version of the plan document this lowcloud writes and reads. */
export const PLAN_FORMAT_VERSION = '1';

export interface PlanMachine {
  agent: string;
  key?: string;
  /** The agent's state generation when the plan was made against live state; absent for offline plans. */
  generation?: number;
  /** Spec digest of every process on the machine in the base state: apply checks the live state against it. */
  before: Record<string, string>;
}

/** The versioned plan document (`plan --json`, `plan --out`); see packages/planner/PLAN-FORMAT.md. */
export interface PlanDocument {
  format_version: string;
  planner: string;
  base: { label: string; digest: string };
  target: { label: string; digest: string; file?: string };
  summary: { start: number; stop: number; replace_config: number };
  machines: Record<string, PlanMachine>;
  calls: PlanCall[];
  changes: Change[];
  /** sha256 -> path (relative to target.file) of every blob a start or replace-config needs. */
  files: Record<string, string>;
}

/** Where a machine's `before` table comes from while it is not made yet: the base's lists, and the indexes of its processes in them. */
export interface BeforeLists {
  names: readonly string[];
  digests: readonly string[];
  at: readonly number[];
}

/** The machines whose `before` table is still their lists (buildDocument); document-text.ts writes those from the lists. */
export const pendingBefore = new WeakMap<PlanMachine, BeforeLists>();

/**
 * Gives `record` a `before` made from `from` when first read, then kept as a plain property in
 * the same place (a redefined property keeps its position, so JSON.stringify's order is as if it
 * had been there from the start).
 */
function lazyBefore(record: PlanMachine, from: BeforeLists): void {
  pendingBefore.set(record, from);
  const make = (): Record<string, string> => {
    const table = Object.create(null) as Record<string, string>;
    for (const i of from.at) table[from.names[i] as string] = from.digests[i] as string;
    pendingBefore.delete(record);
    Object.defineProperty(record, 'before', { value: table, enumerable: true, writable: true, configurable: true });
    return table;
  };
  Object.defineProperty(record, 'before', {
    enumerable: true,
    configurable: true,
    get: make,
    set(value: Record<string, string>) {
      make();
      record.before = value;
    },
  });
}

export function buildDocument(
  plan: Plan,
  // stateDigest: where the state was loaded its digest may come with it (load.ts: worked out in the worker).
  a: PlanState & { label: string; stateDigest?: string },
  b: PlanState & { label: string; file?: string; blobs?: Record<string, string>; stateDigest?: string },
  generations: Record<string, number> = {},
): PlanDocument {
  // Grouped once: scanning every process for every machine took 13 s for 10,000 x 1,000.
  const beforeByMachine = new Map<string, Record<string, string>>();
  const add = (name: string, machine: string, digest: string) => {
    let before = beforeByMachine.get(machine);
    if (before === undefined) {
      // A table, not an object of fixed shape: each machine's process names are its own, and V8
      // gave every record of a few names a hidden-class chain of its own (at 100,000 processes on
      // 10,000 machines, 0.18 s against 0.05 s). No prototype either: a process named `constructor`
      // is a name like any other.
      before = Object.create(null) as Record<string, string>;
      beforeByMachine.set(machine, before);
    }
    before[name] = digest;
  };
  // The lists are the table's order (process-lists.ts): walked where they can be, the table is not
  // built; nor are the machines' tables, until something reads one (document-text.ts writes them
  // from the lists: at 50,000 processes building them cost ~40 ms and their text ~50 ms more).
  const lists = listsOf(a);
  const groups = new Map<string, number[]>();
  if (lists !== undefined) {
    for (let i = 0; i < lists.names.length; i++) {
      const m = lists.machineOf[i] as string;
      let g = groups.get(m);
      if (g === undefined) groups.set(m, (g = []));
      g.push(i);
    }
  } else for (const p of Object.values(a.processes)) add(p.name, p.machine, p.digest);
  const machines: Record<string, PlanMachine> = {};
  for (const name of [...new Set([...Object.keys(a.machines), ...Object.keys(b.machines)])].sort()) {
    const m = own(b.machines, name) ?? own(a.machines, name);
    if (m === undefined) continue;
    const gen = generations[name];
    const at = groups.get(name);
    const record = { agent: m.agent, ...(m.key === undefined ? {} : { key: m.key }), ...(gen === undefined ? {} : { generation: gen }) } as PlanMachine;
    if (lists !== undefined && at !== undefined) lazyBefore(record, { names: lists.names, digests: lists.digests, at });
    else record.before = beforeByMachine.get(name) ?? {};
    machines[name] = record;
  }
  const files: Record<string, string> = {};
  for (const c of plan.calls) {
    for (const d of callBlobs(c)) {
      const p = b.blobs?.[d];
      if (p !== undefined) files[d] = p;
    }
  }
  const count = (k: PlanCall['call']) => plan.calls.filter((c) => c.call === k).length;
  return {
    format_version: PLAN_FORMAT_VERSION,
    planner: plan.planner,
    base: { label: a.label, digest: a.stateDigest ?? stateDigest(a) },
    target: { label: b.label, digest: b.stateDigest ?? stateDigest(b), ...(b.file === undefined ? {} : { file: b.file }) },
    summary: { start: count('start'), stop: count('stop'), replace_config: count('replace-config') },
    machines,
    calls: plan.calls,
    changes: plan.changes,
    files: Object.fromEntries(Object.entries(files).sort(([x], [y]) => (x < y ? -1 : 1))),
  };
}

/**
 * Reads a plan document. Consumers must reject a major version they do not know: a newer lowcloud
 * may have changed what the calls mean.
 */
export function parsePlanDocument(value: unknown, source = 'plan'): PlanDocument {
  if (!isObject(value)) throw new PlanFormatError(source, 'not a plan document (expected a JSON object)');
  const v = value as Partial<PlanDocument>;
  if (typeof v.format_version !== 'string') {
    throw new PlanFormatError(source, 'format_version is missing; was this written by `lowcloud plan --out`?');
  }
  const major = v.format_version.split('.')[0];
  if (major !== PLAN_FORMAT_VERSION) {
    throw new PlanFormatError(source, `plan format_version ${v.format_version} is not supported; this lowcloud reads version ${PLAN_FORMAT_VERSION}.x (re-create the plan with this lowcloud)`);
  }
  for (const k of ['calls', 'changes'] as const) {
    if (!Array.isArray(v[k])) throw new PlanFormatError(source, `${k} must be a list`);
  }
  if (!isObject(v.machines)) throw new PlanFormatError(source, 'machines must be an object');
  (v.calls as unknown[]).forEach((c, i) => checkCall(c, `${source}: calls[${i}]`));
  return v as PlanDocument;
}

/** Each call carries what its type needs (a start its spec, a replace-config its config): checked once, here. */
function checkCall(c: unknown, at: string): asserts c is PlanCall {
  const problem = callProblem(c);
  if (problem !== null) throw new PlanFormatError(at, `${problem}; was this written by \`lowcloud plan --out\`?`);
}

function callProblem(c: unknown): string | null {
  if (!isObject(c)) return 'not an object';
  for (const k of ['machine', 'process'] as const) if (typeof c[k] !== 'string') return `${k} must be a string`;
  if (!Number.isInteger(c.phase)) return 'phase must be a whole number';
  const digests = (m: unknown) => isObject(m) && Object.values(m).every((d) => typeof d === 'string');
  switch (c.call) {
    case 'start':
      if (!isObject(c.spec) || typeof c.spec.binary !== 'string' || !digests(c.spec.config) || !isObject(c.spec.grants)) return 'a start must carry the whole spec';
      return typeof c.specDigest === 'string' ? null : 'a start must carry its specDigest';
    case 'replace-config':
      if (!digests(c.config)) return 'a replace-config must carry its config (guest path -> sha256)';
      return typeof c.specDigest === 'string' ? null : 'a replace-config must carry its specDigest';
    case 'stop':
      return null;
    default:
      return `call must be start, stop or replace-config, not ${JSON.stringify(c.call)}`;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
