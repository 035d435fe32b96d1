import { stat } from 'node:fs/promises';
import type { ProcessSpec } from '@lowcloud/api';
import { InvalidInputError, LowcloudError, type ErrorCode, type ResolvedMachine } from '@lowcloud/api/infra';
import type { PlanProcess, PlanState } from './plan/types.js';
import { own } from './own.js';
import { loadFromGit, loadFromWorkingTree, type PlanSide } from './side-load.js';
import { endUnclaimed, sideThread, workersKnob, WORKER_BYTES, type SideThread, type ThreadEnd } from './side-thread.js';

export { WORKER_BYTES };
export { loadDigests, loadFromGit, loadFromWorkingTree, type LoadedInfra, type PlanSide } from './side-load.js';

/** What `plan` needs of a side: the plan state, and the blobs a start may upload. */
export type PlanInfra = PlanState & { label: string; file: string; blobs: Record<string, string>; stateDigest?: string };

/**
 * Both sides of a plan, loaded; the base's problems are reported first when both have some.
 * `baseSpecs`: which base specs the planner reads (Planner.reads); the target's it reads are those
 * of the processes that change.
 */
export async function loadForPlan(base: PlanSide, target: PlanSide, baseSpecs: 'changed' | 'all' = 'all'): Promise<[PlanInfra, PlanInfra]> {
  const workers = (await useWorkers(base, target)) ? ([new SideWorker(base), new SideWorker(target)] as const) : undefined;
  // Workers bin/lowcloud.js started for other sides than these (it read the command line its own way).
  endUnclaimed();
  if (workers === undefined) {
    const load = (s: PlanSide) => (s.revision === undefined ? loadFromWorkingTree(s.file) : loadFromGit(s.file, s.revision));
    const [x, y] = await Promise.allSettled([load(base), load(target)]);
    return [settled(x), settled(y)];
  }
  try {
    const [x, y] = await Promise.allSettled([workers[0].summary, workers[1].summary]);
    const a = settled(x);
    const b = settled(y);
    // Specs cross only where the plan reads them: a process that is new, changed or moved.
    const aIndex = indexIn(a.names, b.names);
    const wantA: number[] = [];
    const wantB: number[] = [];
    for (let j = 0; j < b.names.length; j++) {
      const i = aIndex[j];
      const changed = i === undefined || a.digests[i] !== b.digests[j];
      if (changed || a.machineOf[i] !== b.machineOf[j]) wantB.push(j);
      if (changed && i !== undefined && baseSpecs === 'changed') wantA.push(i);
      // The same string on both sides: the target's table of processes then finds each name
      // already hashed and in V8's table of property names (fromWorker builds the base's first).
      if (i !== undefined) b.names[j] = a.names[i] as string;
    }
    const [specsA, specsB] = await Promise.all([workers[0].specs(baseSpecs === 'all' ? 'all' : wantA), workers[1].specs(wantB)]);
    return [fromWorker(a, baseSpecs === 'all' ? a.names.map((_, i) => i) : wantA, specsA), fromWorker(b, wantB, specsB)];
  } finally {
    for (const w of workers) void w.worker.terminate();
  }
}

/**
 * The target of `plan --live`, loaded the way loadForPlan loads a side: above WORKER_BYTES in a
 * worker thread, where it is read, parsed, resolved and hashed while this thread asks the agents
 * for the base (`live`, given the target's machines). Only the specs of the processes that differ
 * from the live state cross back.
 */
export async function loadForLivePlan<T>(
  target: PlanSide,
  live: (machines: Record<string, ResolvedMachine>) => Promise<T & { live: PlanState }>,
): Promise<{ target: PlanInfra } & T & { live: PlanState }> {
  if (!(await useWorkers(target))) {
    const infra = await loadFromWorkingTree(target.file);
    return { target: infra, ...(await live(infra.machines)) };
  }
  const worker = new SideWorker(target);
  try {
    const b = await worker.summary;
    const got = await live(b.machines);
    const want: number[] = [];
    for (let j = 0; j < b.names.length; j++) {
      const now = own(got.live.processes, b.names[j] as string);
      if (now === undefined || now.digest !== b.digests[j] || now.machine !== b.machineOf[j]) want.push(j);
    }
    return { target: fromWorker(b, want, await worker.specs(want)), ...got };
  } finally {
    void worker.worker.terminate();
  }
}

/**
 * For each name of `y`, its index in `x` (undefined where x lacks it). Both come sorted from
 * resolve.ts: then one merge walk, where a Map of 100,000 names cost ~0.05 s more.
 */
function indexIn(x: string[], y: string[]): (number | undefined)[] {
  const out: (number | undefined)[] = new Array<number | undefined>(y.length);
  const sorted = (l: string[]) => l.every((n, k) => k === 0 || (l[k - 1] as string) < n);
  if (!sorted(x) || !sorted(y)) {
    const index = new Map<string, number>();
    x.forEach((n, i) => index.set(n, i));
    y.forEach((n, j) => (out[j] = index.get(n)));
    return out;
  }
  let i = 0;
  for (let j = 0; j < y.length; j++) {
    const n = y[j] as string;
    while (i < x.length && (x[i] as string) < n) i++;
    out[j] = i < x.length && x[i] === n ? i : undefined;
  }
  return out;
}

/** The value, or the error thrown; called base first, so the base's problems win whichever came first. */
function settled<T>(r: PromiseSettledResult<T>): T {
  if (r.status === 'rejected') throw r.reason;
  return r.value;
}

async function useWorkers(...sides: PlanSide[]): Promise<boolean> {
  const knob = workersKnob();
  if (knob !== undefined) return knob;
  // A side at a git revision is about as big as the file in the working tree.
  const size = (s: PlanSide) => stat(s.file).then((st) => st.size, () => 0);
  const sizes = await Promise.all(sides.map(size));
  return sizes.reduce((x, y) => x + y, 0) >= WORKER_BYTES;
}

/**
 * What a worker sends back first: each process's name, machine and digest. Specs follow as JSON
 * text for the processes the plan reads (WorkerSpecs), parsed here when first read: strings cross
 * between threads as one copy, while the resolved object graph would cost more to copy than to build.
 */
export interface WorkerSide {
  label: string;
  file: string;
  machines: Record<string, ResolvedMachine>;
  blobs: Record<string, string>;
  names: string[];
  machineOf: string[];
  digests: string[];
  /** Index -> sealed fields, for the processes that have any. */
  sealed: Record<number, string[]>;
}

/**
 * WorkerSide as it crosses: names, machines and digests each one string of lines (names and
 * digests hold no line break). Three strings copy and split faster than 300,000 strings copy one
 * by one (at 100,000 processes ~0.1 s less in this thread). The machines cross as their JSON
 * text: at 5,000 machines the structured clone of their records took ~55 ms from the worker's
 * post to this thread's message, the text with its JSON.stringify ~15 ms (and JSON keeps every
 * field a record holds: strings and numbers).
 */
export type WorkerSummary = Omit<WorkerSide, 'names' | 'machineOf' | 'digests' | 'machines'> & { names: string; machineOf: string; digests: string; machines: string };

function fromSummary(s: WorkerSummary): WorkerSide {
  const lines = (text: string) => (text === '' ? [] : text.split('\n'));
  return { ...s, machines: JSON.parse(s.machines) as WorkerSide['machines'], names: lines(s.names), machineOf: lines(s.machineOf), digests: lines(s.digests) };
}

/**
 * The specs of the processes asked for (indexes into `names`, or all), in that order, as JSON; and
 * document.ts stateDigest of the side, worked out in the worker after its summary.
 */
export interface WorkerSpecs {
  specs: string[];
  stateDigest: string;
}

/** An error as it crosses from the worker: enough to throw the same error here. */
export interface WorkerError {
  message: string;
  stack?: string;
  code?: string;
  details?: Record<string, unknown>;
  diagnostics?: InvalidInputError['diagnostics'];
}

export type WorkerReply = { ok: true; side: WorkerSummary } | { ok: false; error: WorkerError };

/** A worker loading one side (side-thread.ts): its summary, then the specs asked for, with errors as this package throws them. */
class SideWorker {
  private readonly thread: SideThread;
  readonly summary: Promise<WorkerSide>;

  constructor(side: PlanSide) {
    this.thread = sideThread(side);
    this.summary = this.thread.reply.then(
      (reply) => {
        if (!reply.ok) throw toError(reply.error);
        return fromSummary(reply.side);
      },
      (end: ThreadEnd) => {
        throw this.ended(end);
      },
    );
    // Failures reach the caller through `summary` or `specs`; this only keeps an unread one quiet.
    this.summary.catch(() => undefined);
  }

  get worker() {
    return this.thread.worker;
  }

  specs(want: number[] | 'all'): Promise<WorkerSpecs> {
    return this.thread.specs(want).catch((end: ThreadEnd) => {
      throw this.ended(end);
    });
  }

  private ended(end: ThreadEnd): Error {
    return 'error' in end ? end.error : new LowcloudError('INTERNAL', `the worker loading ${this.thread.side.file} exited (${end.exit}) before it was done`);
  }
}
function toError(e: WorkerError): Error {
  const err =
    e.diagnostics !== undefined
      ? new InvalidInputError(e.diagnostics, e.code as ErrorCode)
      : e.code !== undefined
        ? new LowcloudError(e.code as ErrorCode, e.message, e.details === undefined ? undefined : { details: e.details })
        : new Error(e.message);
  if (e.stack !== undefined) err.stack = e.stack;
  return err;
}

/**
 * A process of a side loaded in a worker: its spec is parsed from JSON the first time it is read.
 * A process the plan does not change has no spec here; reading it is a bug of this file.
 */
class WorkerProcess implements PlanProcess {
  private parsed: ProcessSpec | undefined;
  constructor(
    readonly name: string,
    readonly machine: string,
    readonly digest: string,
    readonly sealed: string[],
    private readonly json: string | undefined,
  ) {}

  get spec(): ProcessSpec {
    if (this.json === undefined) throw new LowcloudError('INTERNAL', `the spec of ${this.name} was not loaded: loadForPlan loads the specs of changed processes only`);
    return (this.parsed ??= JSON.parse(this.json) as ProcessSpec);
  }
}

const NONE_SEALED: string[] = [];

/**
 * A side as the plan reads it: its sorted lists (process-lists.ts), a process object made only
 * where one is read (the processes that change), and the table of processes built only if
 * something reads it (a planner that walks every process: blue-green; the live plan). At 100,000
 * processes building the two tables cost this thread ~0.35 s and much of its collection.
 */
function fromWorker(s: WorkerSide, want: number[], { specs, stateDigest }: WorkerSpecs): PlanInfra {
  const json: (string | undefined)[] = new Array(s.names.length);
  want.forEach((i, k) => (json[i] = specs[k]));
  const made: (PlanProcess | undefined)[] = new Array(s.names.length);
  const at = (i: number): PlanProcess => (made[i] ??= new WorkerProcess(s.names[i] as string, s.machineOf[i] as string, s.digests[i] as string, s.sealed[i] ?? NONE_SEALED, json[i]));
  let table: Record<string, PlanProcess> | undefined;
  return {
    label: s.label,
    file: s.file,
    machines: s.machines,
    get processes(): Record<string, PlanProcess> {
      if (table === undefined) {
        table = {};
        for (let i = 0; i < s.names.length; i++) table[s.names[i] as string] = at(i);
      }
      return table;
    },
    lists: { names: s.names, machineOf: s.machineOf, digests: s.digests, at },
    blobs: s.blobs,
    stateDigest,
  };
}
