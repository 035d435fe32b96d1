import {
  bodyDigest,
  verifiedBodyDigest,
  ErrorCode,
  helloProofData,
  isolationOf,
  LowcloudError,
  MAX_BATCH_CALLS,
  publicSpec,
  signBytes,
  specDigest,
  type AgentEvent,
  type AgentStatus,
  type Capabilities,
  type ProcessStatus,
  type Reply,
  type Request,
  type Results,
  type ResultType,
} from '@lowcloud/api';
import { probeCapabilities, type GuestHandle } from '@lowcloud/sandbox';
import { BlobMissingError, CallAuthError, ProcessNotFoundError, SpecConflictError } from '../errors.js';
import { RequestAuthenticator } from './auth.js';
import type { Caller, Connection, ConnectionHost } from './connection.js';
import type { AgentCore } from './core.js';
import { streamLog } from './logs.js';
import { mapBounded } from './map-bounded.js';
import { processPaths } from './runner.js';
import { byName, type CallRecord, type DesiredState } from './state-store.js';
import { crashPoint, crashTicket, slowAct, type CrashTicket } from './test-hooks.js';
import { hostOf, liveFigures, LIVE_REUSE_MS, type LiveFigures } from './usage.js';

/**
 * At most this many calls in one group (one state.json write, one audit append). A pipelining
 * client's window fits (the apply engine's is 1,024: a 1,000-start `up` is two groups, the first
 * taken as the first call arrives); a larger group would only make each reply wait longer.
 * Measured on a 1,000-shared `up` (bench/agent): with groups and a window of 256 each group of 256
 * waited for the one before it to be answered, ~0.45 s apiece, 2.6-2.7 s in all; with 1,024,
 * 2.1-2.5 s.
 */
const MAX_GROUP = 1024;
/**
 * Guests started or replaced at once within a group (each a process spawn, bounded again by
 * `MAX_PROCESS_ACTS`, or a message to a shared host: the adds of one turn go to their host as one
 * write, so 32 at a time was eight round trips to the host per 256 starts).
 */
const ACT_CONCURRENCY = 256;
/**
 * Acts begun in one turn of the event loop. Begun all at once, 256 acts each ran their first steps
 * (run directory, admission, supervisor) before any reached its guest host, whose adds then went as
 * one write ~70 ms later, the host idle meanwhile; in turns of this many, the first adds reach
 * it after a few ms, and it starts guests while the agent makes the next.
 */
const ACTS_PER_TURN = 32;
/**
 * At most this many starts and replaces of `process` guests in one group: each is a Node.js
 * start-up (~0.2 CPU-s), and every reply of a group waits for its slowest act, so a group of them
 * stays small enough to be answered within a client's timeout on a busy machine.
 */
const MAX_PROCESS_ACTS = 8;

type MutatingRequest = Exclude<Request, { type: 'hello' | 'batch' }>;

/** A state-changing call waiting to be taken into a group. */
interface Pending {
  req: MutatingRequest;
  caller: Caller;
  /** A put-blob chunk that came as a binary frame (checked against its header at the connection). */
  payload?: Buffer;
  ticket: CrashTicket;
  resolve(reply: Reply): void;
  reject(err: unknown): void;
}

/** What one accepted call of a group does, at each step of the group's order (see `commitGroup`). */
interface Step {
  pending: Pending;
  /** The process it names. */
  name: string;
  /** The generation it was checked against (its audit line's). */
  generation: number;
  record: Omit<CallRecord, 'generation'>;
  /** 2: its change of the desired state. */
  change(processes: DesiredState['processes']): void;
  /** 3: what can fail; on failure it has put back what it touched (a known guest as it was). */
  act(): Promise<void>;
  /** Undo a successful `act` (the call is refused after all). */
  undo(grace: number): Promise<unknown>;
  /** 5: what cannot fail (a guest stopped, the supervisor registered). */
  finish(grace: number): Promise<void>;
  reply(): Reply;
}

/** The disk as a group's checks see it (`commitGroup`). */
interface GroupChecks {
  /** Refuses a call whose bytes would leave less than the reserve free, counting the calls before it in the group. */
  admit(what: string, bytes: number): void;
  /** Whether a blob is stored. */
  has(digest: string): boolean;
  /** The names with a run directory (read once a group), or null where it cannot be read. */
  runDirs(): ReadonlySet<string> | null;
}

/** The process a state-changing call names ('' for none). */
function processOf(req: MutatingRequest): string {
  return req.type === 'start' ? req.spec.name : 'process' in req && typeof req.process === 'string' ? req.process : '';
}

/**
 * The agent's calls, as a connection hands them over: the hello proof, request verification, the
 * read calls, and the state-changing calls, in groups committed together (group commit). What they act on is the `AgentCore`
 * (opened once by the agent's lifecycle, `Agent`).
 */
export class AgentCalls implements ConnectionHost {
  /** State-changing calls not yet taken into a group, in arrival order. */
  private readonly waiting: Pending[] = [];
  /** Whether groups are being taken off `waiting` (one group at a time). */
  private draining = false;
  /** The running guests' CPU and memory last asked (`status`), and when. */
  private live: { at: number; handles: Map<string, GuestHandle>; figures: Promise<Map<string, LiveFigures>> } | null = null;

  constructor(private readonly core: AgentCore) {}

  hello(req: Extract<Request, { type: 'hello' }>, binding: { kind: 'tls-exporter' | 'none'; value: string }): Reply {
    return { type: 'hello', id: req.id, agent: this.core.identity.publicKey, generation: this.core.state.generation, binding: binding.kind, proof: signBytes(this.core.identity.privateKey, helloProofData(req.challenge, binding.value)), batch: MAX_BATCH_CALLS };
  }

  batchTaken(req: Extract<Request, { type: 'batch' }>): Reply {
    return this.result<'batch'>(req.id, { calls: req.calls.length });
  }

  verify(req: Exclude<Request, { type: 'hello' }>): Caller {
    return this.core.auth.check(req);
  }

  count(type: string, result: string): void {
    this.core.metrics.calls.inc({ type, result });
  }

  private result<T extends ResultType>(id: string, result: Results[T]): Reply {
    return { type: 'result', id, generation: this.core.state.generation, result };
  }

  async dispatch(req: Exclude<Request, { type: 'hello' | 'batch' }>, caller: Caller, conn: Connection, payload?: Buffer): Promise<Reply | null> {
    const send = (r: Reply) => conn.send(r);
    switch (req.type) {
      case 'authenticate':
        return this.result<'authenticate'>(req.id, { key: caller.key, role: caller.role });
      case 'status':
        return this.result<'status'>(req.id, await this.status());
      case 'blob-status': {
        // Each digest once (a read key repeating one present digest 10,000 times makes one check).
        const digests = [...new Set(req.digests)];
        const partial: Record<string, number> = {};
        for (const d of digests) {
          const n = this.core.blobs.partialSize(d);
          if (n !== undefined) partial[d] = n;
        }
        return this.result<'blob-status'>(req.id, { present: digests.filter((d) => this.core.blobs.has(d)), partial });
      }
      case 'logs': {
        if (this.core.supervisors.get(req.process) === undefined) throw new ProcessNotFoundError(req.process);
        const file = processPaths(this.core.opts.stateDir, req.process).log;
        // The connection may close while the tail is read: stop the follower then too.
        let stop: (() => void) | null = null;
        let closed = false;
        const forget = conn.follow(() => {
          closed = true;
          stop?.();
        });
        stop = await streamLog(file, { tail: req.tail ?? 100, follow: req.follow === true }, (line) => send({ type: 'log', id: req.id, line }));
        if (closed) stop();
        else if (req.follow !== true) forget(); // a tail has ended: nothing is followed
        return this.result<'logs'>(req.id, {});
      }
      case 'watch': {
        const w = (event: AgentEvent) => send({ type: 'event', id: req.id, event });
        // Past the connection's limit follow throws: the watcher goes again (as on a closed connection).
        this.core.watchers.add(w);
        try {
          conn.follow(() => this.core.watchers.delete(w));
        } catch (err) {
          this.core.watchers.delete(w);
          throw err;
        }
        return this.result<'watch'>(req.id, {});
      }
      default:
        // A full disk met anywhere in a call (a directory made, the sandbox's files) is STATE_DISK_FULL.
        return this.enqueue(req, caller, payload);
    }
  }

  /**
   * Queue a state-changing call. Calls that arrive together (a pipelining client sends up to its
   * window at once) are taken as one group: checked in order, committed with one write of
   * state.json and one append to the audit log, acted on concurrently, answered each after its
   * commit. Groups run one at a time; an upload chunk is a group of its own.
   */
  private enqueue(req: MutatingRequest, caller: Caller, payload?: Buffer): Promise<Reply> {
    // A shared guest's host starts now, while this call waits for its group and is checked.
    if (req.type === 'start') this.core.runner.warm(req.spec);
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.push({ req, caller, ...(payload === undefined ? {} : { payload }), ticket: crashTicket(req.type), resolve, reject });
      if (!this.draining) {
        this.draining = true;
        // After the calls read with this one (the same socket read, the same turn) are queued too.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      const group = this.nextGroup();
      try {
        await (group[0]?.req.type === 'put-blob' ? this.putBlob(group[0]) : this.commitGroup(group));
      } catch (err) {
        // Not reached (each path answers its calls); never leave a caller waiting.
        for (const p of group) p.reject(err);
      }
    }
    this.draining = false;
  }

  /**
   * The next group: the first waiting call, and the state-changing calls behind it up to
   * `MAX_GROUP`, each naming a process not yet in the group (a process's calls act in order).
   */
  private nextGroup(): Pending[] {
    const first = this.waiting.shift() as Pending;
    if (first.req.type === 'put-blob') return [first];
    const group = [first];
    const names = new Set([processOf(first.req)]);
    let spawns = this.spawnsProcess(first.req) ? 1 : 0;
    while (group.length < MAX_GROUP) {
      const next = this.waiting[0];
      if (next === undefined || next.req.type === 'put-blob' || names.has(processOf(next.req))) break;
      const spawn = this.spawnsProcess(next.req);
      if (spawn && spawns >= MAX_PROCESS_ACTS) break;
      if (spawn) spawns++;
      names.add(processOf(next.req));
      group.push(this.waiting.shift() as Pending);
    }
    return group;
  }

  /** Whether a call starts a guest host of its own (a start or replace-config of a `process` guest). */
  private spawnsProcess(req: MutatingRequest): boolean {
    if (req.type === 'start') return isolationOf(req.spec) === 'process';
    if (req.type !== 'replace-config') return false;
    const cur = this.core.state.processes[req.process];
    return cur !== undefined && isolationOf(cur.spec) === 'process';
  }

  private async putBlob(p: Pending): Promise<void> {
    const req = p.req as Extract<Request, { type: 'put-blob' }>;
    crashPoint('before-save', p.ticket);
    try {
      const reply = await this.core.disk.guardAsync(req.type, 0, async () => {
        const data = p.payload ?? Buffer.from(req.data ?? '', 'base64');
        const stored = this.core.blobs.has(req.digest);
        if (!stored) this.core.disk.admit(`put-blob ${req.digest.slice(0, 12)}`, data.length);
        const complete = await this.core.blobs.put(req.digest, req.size, req.offset, data);
        // Every accepted chunk, not only the last: a partial upload leaves a trace too.
        try {
          this.core.audit.append({ key: p.caller.key, type: req.type, body: bodyDigest(req), generation: this.core.state.generation, blob: { digest: req.digest, offset: req.offset, bytes: data.length, complete } });
        } catch (err) {
          if (!stored) this.core.blobs.undo(req.digest, req.offset);
          throw err;
        }
        return this.result<'put-blob'>(req.id, { complete });
      });
      crashPoint('after-save', p.ticket);
      p.resolve(reply);
    } catch (err) {
      p.reject(err);
    }
  }

  /**
   * A group of state-changing calls. The order, for the group as for each of its calls, so that a
   * call that is refused changes nothing and a call that is answered is on disk (state file and
   * audit line, both fsynced) first:
   *   1. checks, in order, each against the state the calls before it leave (its generation; the
   *      reserve of the state filesystem, not for stop: a stop is always possible);
   *   2. the desired state is written, once for the group (`state.json`; `state.json.prev` keeps
   *      the generation before the group);
   *   3. what can fail is done, concurrently (guests started, replaced);
   *   4. the audit lines are appended, once for the group (whole, or the log is left as it was);
   *   5. what cannot fail is done (guests stopped), and each call is answered.
   * A call that fails in 3 is refused, and so are the calls after it in the group: they were made
   * against generations it would have moved (as one by one, where they would meet a generation it
   * did not move). Those before it stand: the state is written again without the refused ones (a
   * rename back to the generation before the group first, which needs no free space). A failure
   * in 4, or of that second write, refuses the whole group. What a refused call did is undone (a
   * guest it started is stopped again, one it replaced started again with its old spec).
   * An agent that dies after 2 finishes the calls when it starts (its reconcile converges on the
   * desired state; missing audit lines are appended from the state file's `lastCalls`).
   */
  private async commitGroup(group: Pending[]): Promise<void> {
    const t0 = performance.now();
    const grace = this.core.opts.defaultGraceMs ?? 5000;
    const draft = byName(this.core.state.processes);
    let generation = this.core.state.generation;
    const steps: Step[] = [];
    const answer = new Map<Pending, { reply: Reply } | { error: unknown }>();
    // What the group's checks ask of the disk, asked once for the group: its free space, and
    // whether each blob named is stored (1,000 starts of one binary ask it 1,000 times).
    const present = new Map<string, boolean>();
    let runDirs: ReadonlySet<string> | null | undefined;
    const checks: GroupChecks = {
      // A new process's restart count is read from its run directory, which most have not got:
      // one listing, not a stat a start (1,000 starts: ~11 ms of the group's checks).
      runDirs: () => (runDirs ??= this.core.runDirNames()),
      admit: this.core.disk.admitter(),
      has: (d) => {
        let known = present.get(d);
        if (known === undefined) present.set(d, (known = this.core.blobs.has(d)));
        return known;
      },
    };
    for (const p of group) {
      crashPoint('before-save', p.ticket);
      try {
        RequestAuthenticator.checkGeneration(p.req, p.caller.auth, generation);
        const step = this.check(p, draft, generation, checks);
        if ('unchanged' in step) answer.set(p, { reply: step.unchanged });
        else {
          steps.push(step);
          step.change(draft);
          generation++;
        }
      } catch (err) {
        answer.set(p, { error: err });
      }
    }
    const t1 = performance.now();
    if (steps.length > 0) {
      try {
        const { kept, failure } = await this.commitSteps(steps, grace);
        for (const s of kept) {
          answer.set(s.pending, { reply: s.reply() });
          crashPoint('after-save', s.pending.ticket);
        }
        if (failure !== null) answer.set(failure.step.pending, { error: failure.error });
      } catch (err) {
        for (const s of steps) answer.set(s.pending, { error: err });
      }
      for (const s of steps) {
        if (!answer.has(s.pending)) answer.set(s.pending, { error: new CallAuthError(ErrorCode.STALE_GENERATION, `${s.pending.req.type} ${s.name} was refused unmade: a call before it in its group was refused, so it meets another generation than it was made against; re-read status and retry`) });
      }
    }
    this.core.metrics.commitSeconds.inc({ step: 'check' }, (t1 - t0) / 1000);
    this.core.metrics.commitGroups.inc();
    this.core.metrics.commitCalls.inc(steps.length);
    for (const p of group) {
      const a = answer.get(p);
      if (a !== undefined && 'reply' in a) p.resolve(a.reply);
      else p.reject(a?.error ?? new LowcloudError(ErrorCode.INTERNAL, `${p.req.type}: no answer`));
    }
  }

  /**
   * Steps 2-5 of a group (see `commitGroup`): the steps that stand, and the one that failed in 3
   * (those after it stand neither); throws when the whole group is refused.
   */
  private async commitSteps(steps: Step[], grace: number): Promise<{ kept: Step[]; failure: { step: Step; error: unknown } | null }> {
    let t = performance.now();
    const lap = (step: string) => {
      const now = performance.now();
      this.core.metrics.commitSeconds.inc({ step }, (now - t) / 1000);
      t = now;
    };
    const save = (list: Step[]) => this.core.state.commitGroup(list.map((s) => ({ change: (p: DesiredState['processes']) => s.change(p), call: s.record })));
    save(steps);
    lap('state');
    for (const s of steps) crashPoint('state-written', s.pending.ticket);
    // 3: concurrently, bounded. A step that fails has put back what it touched itself. Meanwhile
    // (the agent mostly waits on guest hosts here) the audit lines of 4 are signed ahead.
    const entries = steps.map((s) => ({ ...s.record, generation: s.generation }));
    const [errors, signed] = await Promise.all([
      mapBounded(
        steps,
        ACT_CONCURRENCY,
        (s) =>
          this.core.disk.guardAsync(`${s.pending.req.type} ${s.name}`, 0, async () => {
            await slowAct(s.pending.req.type);
            return s.act();
          }),
        ACTS_PER_TURN,
      ),
      // Signing ahead is only a head start: if it fails (it reads no file; a broken key would),
      // `appendAll` signs the lines itself and any error is thrown there, refusing the group as
      // before. Ignored here so that a guest already started is never left without its undo.
      this.core.audit.sign(entries).catch(() => undefined),
    ]);
    lap('act');
    const first = errors.findIndex((e) => e !== undefined);
    let kept = steps;
    let failure: { step: Step; error: unknown } | null = null;
    if (first >= 0) {
      failure = { step: steps[first] as Step, error: errors[first] };
      kept = steps.slice(0, first);
      await Promise.all(steps.slice(first + 1).map((s, i) => (errors[first + 1 + i] === undefined ? s.undo(grace) : Promise.resolve())));
      this.core.state.rollback();
      if (kept.length === 0) return { kept, failure };
      try {
        save(kept);
      } catch (err) {
        await Promise.all(kept.map((s) => s.undo(grace)));
        throw err;
      }
    }
    try {
      this.core.audit.appendAll(entries.slice(0, kept.length), signed);
    } catch (err) {
      await Promise.all(kept.map((s) => s.undo(grace)));
      this.core.state.rollback();
      throw err;
    }
    lap('audit');
    // 5: what cannot fail.
    await Promise.all(kept.map((s) => s.finish(grace)));
    lap('finish');
    return { kept, failure };
  }

  /** A state-changing call checked against the state the calls before it in its group leave: its step, or its answer without a change. */
  private check(p: Pending, draft: DesiredState['processes'], generation: number, checks: GroupChecks): Step | { unchanged: Reply } {
    const { req, caller } = p;
    const record = (process: string): Omit<CallRecord, 'generation'> => ({ key: caller.key, type: req.type, body: verifiedBodyDigest(req), process });
    const core = this.core;
    switch (req.type) {
      case 'start': {
        const digest = specDigest(req.spec);
        const name = req.spec.name;
        const cur = draft[name];
        const known = core.supervisors.get(name);
        if (cur !== undefined && cur.specDigest === digest && known !== undefined && known.state !== 'stopped') return { unchanged: this.result<'stop'>(req.id, { changed: false }) };
        if (cur !== undefined && cur.specDigest !== digest) {
          throw new SpecConflictError(name, `process ${name} runs with another spec (${cur.specDigest.slice(0, 12)}); stop it first, or use replace-config for config changes`);
        }
        const missing = [req.spec.binary, ...Object.values(req.spec.config)].filter((d) => !checks.has(d));
        if (missing.length > 0) throw new BlobMissingError(missing);
        core.runner.openSecrets(req.spec); // a sealed value that does not open refuses the call before anything changes
        checks.admit(`start ${name}`, 2 * Buffer.byteLength(JSON.stringify(req.spec)));
        const spec = req.spec;
        const s = known ?? core.newSupervisor(name, spec, digest, checks.runDirs());
        return {
          pending: p,
          name,
          generation,
          record: record(name),
          change: (processes) => {
            processes[name] = { spec, specDigest: digest };
          },
          act: async () => {
            try {
              await s.start();
            } catch (err) {
              if (s === known) s.adoptExited({ kind: 'stopped' }); // as it was: stopped
              throw err;
            }
          },
          undo: (grace) => s.stop(grace),
          finish: () => {
            core.supervisors.set(name, s);
            return Promise.resolve();
          },
          reply: () => this.result<'start'>(req.id, { changed: true, pid: s.handle?.pid ?? null }),
        };
      }
      case 'stop': {
        const name = req.process;
        const sup = core.supervisors.get(name);
        if (draft[name] === undefined && sup === undefined) return { unchanged: this.result<'stop'>(req.id, { changed: false }) };
        return {
          pending: p,
          name,
          generation,
          record: record(name),
          change: (processes) => {
            delete processes[name];
          },
          act: () => Promise.resolve(),
          undo: () => Promise.resolve(),
          finish: async (grace) => {
            await sup?.stop(grace);
            core.supervisors.delete(name);
          },
          reply: () => this.result<'stop'>(req.id, { changed: true }),
        };
      }
      case 'replace-config': {
        const name = req.process;
        const cur = draft[name];
        const sup = core.supervisors.get(name);
        if (cur === undefined || sup === undefined) throw new ProcessNotFoundError(name);
        const spec = { ...cur.spec, config: req.config };
        const digest = specDigest(spec);
        if (digest !== req.specDigest) {
          throw new SpecConflictError(name, `replace-config ${name}: the new config gives spec ${digest.slice(0, 12)}, the call expects ${req.specDigest.slice(0, 12)}; only config may change this way`);
        }
        if (digest === cur.specDigest) return { unchanged: this.result<'stop'>(req.id, { changed: false }) };
        const missing = Object.values(req.config).filter((d) => !checks.has(d));
        if (missing.length > 0) throw new BlobMissingError(missing);
        core.runner.openSecrets(spec); // as for start: the old guest keeps running
        checks.admit(`replace-config ${name}`, 2 * Buffer.byteLength(JSON.stringify(spec)));
        // Refused after the old guest was stopped: the old spec runs again (or its restart policy takes over).
        const revert = (grace: number) => sup.replace(cur.spec, cur.specDigest, grace).catch((e: unknown) => sup.adoptExited({ kind: 'trap', message: e instanceof Error ? e.message : String(e) }));
        const grace = core.opts.defaultGraceMs ?? 5000;
        return {
          pending: p,
          name,
          generation,
          record: record(name),
          change: (processes) => {
            processes[name] = { spec, specDigest: digest };
          },
          act: async () => {
            try {
              await sup.replace(spec, digest, grace);
            } catch (err) {
              await revert(grace);
              throw err;
            }
          },
          undo: revert,
          finish: () => Promise.resolve(),
          reply: () => this.result<'replace-config'>(req.id, { changed: true, pid: sup.handle?.pid ?? null }),
        };
      }
      default:
        throw new LowcloudError(ErrorCode.BAD_MESSAGE, `unexpected ${req.type}`);
    }
  }

  async status(): Promise<AgentStatus> {
    const processes: ProcessStatus[] = [];
    // A `process` guest's figures are its host process's (the process is its own, warm-pool host or
    // not), read from /proc now; a `shared` guest's are asked of its host.
    const handles = new Map<string, GuestHandle>();
    const own = new Map<string, LiveFigures>();
    for (const [name, desired] of Object.entries(this.core.state.processes)) {
      const h = this.core.supervisors.get(name)?.handle;
      if (h === null || h === undefined) continue;
      if (isolationOf(desired.spec) === 'shared') handles.set(name, h);
      else own.set(name, hostOf(h));
    }
    // One measurement serves the calls of LIVE_REUSE_MS while the same guests run (a guest started
    // or restarted since has a handle it did not ask: then they are asked again).
    const now = performance.now();
    const known = this.live;
    const reuse = known !== null && now - known.at <= LIVE_REUSE_MS && [...handles].every(([name, h]) => known.handles.get(name) === h);
    if (!reuse) this.live = { at: now, handles, figures: liveFigures(handles) };
    const live = new Map([...(await (this.live as NonNullable<typeof this.live>).figures), ...own]);
    for (const [name, desired] of Object.entries(this.core.state.processes)) {
      const s = this.core.supervisors.get(name);
      const figures = live.get(name);
      // The handle as measured: one that went during the wait shows no usage, as a stopped one.
      const usage = s?.handle !== null && s?.handle !== undefined && figures !== undefined ? this.core.usage.of(name, figures, s.spec.grants.disk !== undefined) : null;
      if (usage !== null) {
        this.core.metrics.cpu.set({ process: name }, usage.cpuSeconds);
        this.core.metrics.memory.set({ process: name }, usage.memoryBytes);
        this.core.metrics.disk.set({ process: name }, usage.diskBytes);
      }
      this.core.metrics.restarts.set({ process: name }, s?.restarts ?? 0);
      processes.push({
        name,
        spec: publicSpec(desired.spec),
        specDigest: desired.specDigest,
        state: s?.state ?? 'stopped',
        pid: s?.handle?.pid ?? null,
        host: s?.handle?.host ?? null,
        restarts: s?.restarts ?? 0,
        lastExit: s?.lastExit ?? null,
        enforcement: s?.handle?.report ?? null,
        usage,
        nextRestart: s?.nextRestartAt === null || s?.nextRestartAt === undefined ? null : new Date(s.nextRestartAt).toISOString(),
      });
    }
    const stateDisk = this.core.diskSpace();
    return {
      agent: this.core.identity.publicKey,
      generation: this.core.state.generation,
      startedAt: this.core.startedAt,
      capabilities: withWallPolicy(await probeCapabilities(), this.core.opts.allowUnwalled === true),
      processes,
      ...(stateDisk === null ? {} : { stateDisk }),
      audit: this.core.audit.health(),
      recovered: this.core.recovered,
    };
  }

}

/** Status says what happens to a guest the wall cannot be built around (the agent refuses it unless --allow-unwalled). */
function withWallPolicy(caps: Capabilities, allowUnwalled: boolean): Capabilities {
  const why = caps.unavailable.wall;
  if (why === undefined) return caps;
  const policy = allowUnwalled
    ? 'guests run WITHOUT the wall (--allow-unwalled)'
    : 'guests are refused (GRANT_UNAVAILABLE) but those whose process opts in (allowUnwalled in the infra file), which run WITHOUT the wall; fix the wall, or start the agent with --allow-unwalled to run them all without it';
  return { ...caps, unavailable: { ...caps.unavailable, wall: `${why}; ${policy}` } };
}
