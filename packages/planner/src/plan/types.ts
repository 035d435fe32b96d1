import type { ProcessSpec, ResolvedMachine } from '@lowcloud/api';

/** One side of a diff: a file's resolved contents, or the live state read from agents. */
export interface PlanState {
  machines: Record<string, ResolvedMachine>;
  processes: Record<string, PlanProcess>;
  /**
   * The same processes as lists sorted by name, where the loader has them (load.ts, from the plan
   * workers). diffStates, callsFor and buildDocument walk these and look up only the processes
   * that change: a table of 100,000 names then need not be built (see process-lists.ts).
   */
  lists?: ProcessLists;
}

/** `names[i]` runs on `machineOf[i]` with spec digest `digests[i]`; `at(i)` is `processes[names[i]]`. */
export interface ProcessLists {
  names: readonly string[];
  machineOf: readonly string[];
  digests: readonly string[];
  at(i: number): PlanProcess;
}

export interface PlanProcess {
  name: string;
  machine: string;
  /** From a file: the whole spec. From live state: env is empty, its values are in `envDigests`. */
  spec: ProcessSpec;
  /** Digest of the whole spec, env values included. */
  digest: string;
  /** Live state only: sha256 of each env value (agents never send the values). */
  envDigests?: Record<string, string>;
  /** From a file: the fields holding sealed secrets (`env.K`, `config./path`). */
  sealed?: string[];
}

/**
 * One call of a plan, by call type: each carries exactly its payload, so nothing downstream checks
 * for a missing one. Fields are declared in the order the plan document writes them (PLAN-FORMAT.md).
 */
export type PlanCall = StartCall | StopCall | ReplaceConfigCall;
export type CallKind = PlanCall['call'];

export interface StartCall {
  machine: string;
  call: 'start';
  process: string;
  /** Calls run phase by phase; within a phase machines are independent, within a machine in list order. */
  phase: number;
  /** The whole spec. */
  spec: ProcessSpec;
  /** The spec digest the process has afterwards. */
  specDigest: string;
}

export interface StopCall {
  machine: string;
  call: 'stop';
  process: string;
  phase: number;
}

export interface ReplaceConfigCall {
  machine: string;
  call: 'replace-config';
  process: string;
  phase: number;
  /** The process's whole new config map (guest path -> sha256). */
  config: Record<string, string>;
  /** The spec digest the process has afterwards. */
  specDigest: string;
}

/** `secret-changed`: only sealed values changed (re-sealed or new secrets): a replace-config for sealed config files, a replace for sealed env. */
export type ChangeReason = 'new' | 'removed' | 'config-changed' | 'secret-changed' | 'replaced' | 'moved';

/** One field that forced a change, with old and new values safe to print (never config contents). */
export interface FieldChange {
  path: string;
  from: string;
  to: string;
}

export interface Change {
  process: string;
  /** The calls this change makes, in order, e.g. ['stop', 'start']. */
  actions: CallKind[];
  reason: ChangeReason;
  /** Field paths that forced it: `grants.memory`, `args`, `config./etc/kv.toml`, `machine`. */
  paths: string[];
  fields: FieldChange[];
  /** Machine before and after (equal unless moved). */
  from?: string;
  to?: string;
  /**
   * Why fields changed that the process's own entry did not: a named target that moved or whose
   * machine's address changed (`kv-a moved: its address changed`), a process whose digest it
   * names that changed (`map-a changed`); that the process may run without the kernel wall
   * (`allowUnwalled`, on a new process too).
   */
  because?: string[];
  /** Set when a planner could not do what it prefers and fell back (blue-green without room). */
  note?: string;
}

export interface Plan {
  planner: string;
  calls: PlanCall[];
  changes: Change[];
}

export interface Planner {
  readonly name: string;
  readonly description: string;
  /** Which specs of the base `plan` reads: those of the processes that change, or all of them. */
  readonly reads: 'changed' | 'all';
  plan(a: PlanState, b: PlanState): Plan;
}
