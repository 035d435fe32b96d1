import fs from 'node:fs';
import path from 'node:path';
import { specDigest, type ProcessSpec } from '@lowcloud/api';
import { restorePrevious } from '@lowcloud/sandbox';
import { StateFileError } from '../errors.js';
import { StateDisk } from './state-disk.js';

/** A state-changing call as its audit line records it (`generation`: the one it was checked against). */
export interface CallRecord {
  key: string;
  type: string;
  body: string;
  generation: number;
  process?: string;
}

export interface DesiredState {
  generation: number;
  processes: Record<string, { spec: ProcessSpec; specDigest: string }>;
  /**
   * The calls that made this generation, in order (one commit can hold a group of calls, each
   * moving the generation by one). The state file is the commit point of a call and its audit line
   * comes after it: an agent that died between the two appends the lines when it starts.
   */
  lastCalls?: CallRecord[];
  /** What state files before group commit held: the one call that made this generation. */
  lastCall?: CallRecord;
  /**
   * Where the audit chain stood when this was written (its last line's number and hash). A log
   * deleted together with its head verifies as empty; this is what says lines existed.
   */
  audit?: { seq: number; hash: string };
}

/** One change of a group commit, and the call that asked for it. */
export interface StateChange {
  /** Sets or deletes entries of `processes`, never changes one in place (the map is copied, its entries shared). */
  change(processes: DesiredState['processes']): void;
  call?: Omit<CallRecord, 'generation'>;
}

/**
 * The agent's desired state: what it was told to run, in `state.json`. Each change is written whole
 * (temporary file, fsync, rename) with the generation before it kept as `state.json.prev` (a hard
 * link), so that
 * - a change can be undone until its call is answered (`rollback`: a rename, which needs no free
 *   space, so a call refused after its state was written leaves the state as it was), and
 * - a `state.json` that does not parse (edited by hand, a disk that lies) is never the only copy:
 *   the agent falls back to the previous generation, loudly, and keeps the broken file aside.
 */
export class StateStore {
  private state: DesiredState;
  /** The state before the last commit, while it can still be rolled back. */
  private before: DesiredState | null = null;
  private readonly file: string;
  private readonly disk: StateDisk;
  /** What was recovered at load (a broken state file replaced by its previous generation), or null. */
  readonly recovered: string | null = null;
  /** The audit chain's position now, recorded with every commit (set by trackAudit). */
  private auditPosition: (() => NonNullable<DesiredState['audit']>) | null = null;
  private readonly report: (line: string) => void;

  constructor(dir: string, opts: { disk?: StateDisk; report?: (line: string) => void } = {}) {
    this.file = path.join(dir, 'state.json');
    this.disk = opts.disk ?? new StateDisk(dir);
    this.report = opts.report ?? (() => undefined);
    const current = readState(this.file);
    if (current.ok) {
      this.state = current.state;
      return;
    }
    if (current.reason === 'missing' && !fs.existsSync(`${this.file}.prev`)) {
      this.state = { generation: 0, processes: byName({}) };
      return;
    }
    const prev = readState(`${this.file}.prev`);
    if (!prev.ok) {
      throw new StateFileError(this.file, `${current.reason}, and ${path.basename(this.file)}.prev (the generation before it) ${prev.reason === 'missing' ? 'is missing' : prev.reason}`, 'restore it from a backup, or move both aside to start with an empty desired state (running guests are left alone)');
    }
    let kept = '';
    if (current.reason !== 'missing') {
      kept = `${this.file}.broken-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      fs.renameSync(this.file, kept);
    }
    let rewritten = '';
    try {
      this.disk.writeFile(this.file, JSON.stringify(prev.state, null, 2));
    } catch (err) {
      // A full disk must not keep the agent from starting: the next change writes state.json.
      rewritten = ` (not written back yet: ${err instanceof Error ? err.message : String(err)})`;
    }
    this.state = prev.state;
    this.recovered = `state.json ${current.reason}${kept === '' ? '' : ` (kept as ${path.basename(kept)})`}; recovered generation ${prev.state.generation} from state.json.prev${rewritten}`;
    opts.report?.(`STATE FILE RECOVERED: ${this.file}: ${this.recovered}`);
  }

  get generation(): number {
    return this.state.generation;
  }

  get processes(): DesiredState['processes'] {
    return this.state.processes;
  }

  /** The calls that made this generation, oldest first. */
  get lastCalls(): CallRecord[] {
    return this.state.lastCalls ?? (this.state.lastCall === undefined ? [] : [this.state.lastCall]);
  }

  get lastCall(): CallRecord | undefined {
    return this.lastCalls.at(-1);
  }

  /** Where the audit chain stood at the last write of this file (undefined: never recorded, or not well formed). */
  get audit(): DesiredState['audit'] {
    const a = this.state.audit;
    return a !== undefined && a !== null && Number.isInteger(a.seq) && typeof a.hash === 'string' ? a : undefined;
  }

  /**
   * From now on every commit records where the audit chain stands. Recorded at once too when it
   * moved since this file was written (lines past the last commit, or a new segment: a fresh agent,
   * a log that was broken or deleted), so the next start checks the chain that is there now.
   */
  trackAudit(position: () => NonNullable<DesiredState['audit']>): void {
    this.auditPosition = position;
    const now = position();
    const was = this.audit;
    if (was !== undefined && now.seq === was.seq && now.hash === was.hash) return;
    const next: DesiredState = { ...this.state, audit: now };
    try {
      this.disk.writeFile(this.file, JSON.stringify(next, null, 2));
      this.state = next;
    } catch (err) {
      this.report(`state file: the audit log's new position not recorded (${err instanceof Error ? err.message : String(err)}); the next commit records it`);
    }
  }

  /** Apply a change and persist it durably; the generation goes up by one. */
  commit(change: (processes: DesiredState['processes']) => void, call?: Omit<CallRecord, 'generation'>): number {
    return this.commitGroup([{ change, ...(call === undefined ? {} : { call }) }]);
  }

  /**
   * Apply a group of changes, in order, and persist them with one write (one fsync, however many
   * calls): each moves the generation by one, as if committed one by one. `rollback` undoes the
   * whole group.
   */
  commitGroup(changes: StateChange[]): number {
    // A shallow copy: changes replace entries whole, so the state before stays as it was (for
    // rollback) without a deep clone of every spec per group (1,000 starts in 29 groups).
    const next: DesiredState = { generation: this.state.generation, processes: byName(this.state.processes) };
    const calls: CallRecord[] = [];
    for (const c of changes) {
      c.change(next.processes);
      if (c.call !== undefined) calls.push({ ...c.call, generation: next.generation });
      next.generation += 1;
    }
    if (calls.length > 0) next.lastCalls = calls;
    if (this.auditPosition !== null) next.audit = this.auditPosition();
    this.disk.writeFile(this.file, JSON.stringify(next, null, 2), { keepPrevious: true });
    this.before = this.state;
    this.state = next;
    return next.generation;
  }

  /** Undo the last commit (its call is being refused): the previous generation is the state again. */
  rollback(): void {
    if (this.before === null) throw new Error('StateStore.rollback without a commit to undo'); // programmer error
    restorePrevious(this.file);
    this.state = this.before;
    this.before = null;
  }

  set(spec: ProcessSpec, call?: Omit<CallRecord, 'generation'>): number {
    return this.commit((p) => {
      p[spec.name] = { spec, specDigest: specDigest(spec) };
    }, call);
  }

  remove(name: string, call?: Omit<CallRecord, 'generation'>): number {
    return this.commit((p) => {
      delete p[name];
    }, call);
  }
}

type Read = { ok: true; state: DesiredState } | { ok: false; reason: string };

/** A state file, checked: every process's spec still hashes to its recorded digest. */
function readState(file: string): Read {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, reason: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `cannot be read (${(err as Error).message})` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `does not parse (${(err as Error).message}; ${text.length} bytes)` };
  }
  const s = raw as Partial<DesiredState> | null;
  if (s === null || typeof s !== 'object' || !Number.isInteger(s.generation) || (s.generation as number) < 0 || s.processes === null || typeof s.processes !== 'object') {
    return { ok: false, reason: 'is not a desired state (generation and processes)' };
  }
  for (const [name, p] of Object.entries(s.processes)) {
    let matches = false;
    try {
      matches = p !== null && typeof p === 'object' && p.spec?.name === name && specDigest(p.spec) === p.specDigest;
    } catch {
      // a spec too malformed to hash
    }
    if (!matches) return { ok: false, reason: `process ${name}: its spec does not match its digest` };
  }
  return { ok: true, state: { ...(s as DesiredState), processes: byName(s.processes as DesiredState['processes']) } };
}

/**
 * A copy of `processes` with no prototype: a process may be named `constructor`, and a lookup of a
 * name the state does not hold must find nothing, not Object.prototype's property.
 */
export function byName(processes: DesiredState['processes']): DesiredState['processes'] {
  return Object.assign(Object.create(null) as DesiredState['processes'], processes);
}
