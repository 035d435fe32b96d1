import path from 'node:path';
import { ErrorCode, LowcloudError, sha256Hex, WorkingTreeSource, type KeyPair } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { callBlobs } from '../plan/calls.js';
import type { PlanDocument } from '../plan/document.js';
import { asError, BlobChangedError, MissingFileError, PlanStaleError } from '../errors.js';
import type { PlanCall } from '../plan/types.js';
import { APPLY_WINDOW, byMachine, connectOne, type AgentLinks, type Endpoints } from './live.js';
import { mapLimited } from './limit.js';
import type { ProgressReporter } from './progress.js';
import { decideResume, describeDrift } from './resume.js';
import { own } from '../own.js';

export interface CallResult {
  machine: string;
  call: PlanCall['call'];
  process: string;
  status: 'ok' | 'skipped' | 'failed' | 'not-run';
  ms: number;
  error?: { code: string; message: string };
}

export interface ApplyResult {
  ok: boolean;
  calls: CallResult[];
  machines: Record<string, { ok: boolean; ms: number; error?: string }>;
  ms: number;
}

export interface ApplyOptions {
  endpoints: Endpoints;
  signer: KeyPair;
  /** Machines worked on at once: the bound on open connections. */
  parallelism: number;
  /** Reads a blob by the path the plan recorded (relative to the target infra file). */
  readFile(relPath: string): Promise<Uint8Array | null>;
  reporter: ProgressReporter;
  timeoutMs?: number;
  /** Connections the command's earlier steps left open (`up`): the check takes them rather than connecting again. */
  links?: AgentLinks;
}

/** One call of the plan with its place in `doc.calls` (its result is `results[index]`). */
interface Indexed {
  call: PlanCall;
  index: number;
}

/**
 * Executes a plan document against the agents. First every machine is checked: its key (the
 * client verifies the pinned key) and its live state against the plan (a stale plan is refused
 * before any call, naming what moved). Then each machine, on its own: the blobs it lacks are
 * uploaded and its calls run in the plan's order, pipelined over its one connection (the agent
 * takes them in order). Machines wait for each other only where the plan orders calls across
 * machines (a move: see `stages`). Calls already done (a re-run after a partial failure, or an
 * applied plan) are skipped, so running the same apply again resumes.
 *
 * Every machine is reached at once up to `parallelism` open connections, so a fleet-wide step
 * costs a few round trips, not one per machine; the calls are grouped by machine once.
 */
export async function applyPlan(doc: PlanDocument, opts: ApplyOptions): Promise<ApplyResult> {
  const t0 = performance.now();
  const results: CallResult[] = doc.calls.map((c) => ({ machine: c.machine, call: c.call, process: c.process, status: 'not-run', ms: 0 }));
  const machines: ApplyResult['machines'] = {};
  if (doc.calls.length === 0) return { ok: true, calls: [], machines, ms: performance.now() - t0 };
  const perMachine = new Map<string, Indexed[]>();
  doc.calls.forEach((call, index) => {
    const list = perMachine.get(call.machine);
    if (list === undefined) perMachine.set(call.machine, [{ call, index }]);
    else list.push({ call, index });
  });
  const machineNames = [...perMachine.keys()].sort();
  const timeoutMs = opts.timeoutMs ?? 15_000;
  // Connections stay open from the check to the calls for a fleet of up to KEEP_OPEN machines (or
  // the parallelism, if larger); a larger fleet reconnects, to bound what is open at once.
  const keep = machineNames.length <= Math.max(opts.parallelism, KEEP_OPEN);
  const clients = new Map<string, AgentClient>();
  const errors = new Map<string, Error>();
  try {
    // 1. Check every machine before any call: its key, its live state, and which blobs it has.
    const remaining = new Map<string, Set<PlanCall>>();
    const present = new Map<string, Set<string>>();
    const stale = new Map<string, string>();
    await mapLimited(machineNames, opts.parallelism, async (m) => {
      const mine = (perMachine.get(m) as Indexed[]).map((x) => x.call);
      let client: AgentClient;
      try {
        client = await connectOne(opts.endpoints, m, opts.signer, timeoutMs, opts.links);
      } catch (err) {
        errors.set(m, asError(err));
        return;
      }
      try {
        const blobs = [...new Set(mine.flatMap((c) => callBlobs(c)))];
        // Both asked at once: one round trip.
        const [st, have] = await Promise.all([client.status(), blobs.length === 0 ? null : client.blobStatus(blobs)]);
        const live = Object.fromEntries(st.processes.map((p) => [p.name, p.specDigest]));
        const decision = decideResume(mine, own(doc.machines, m)?.before ?? {}, live);
        if (!decision.ok) stale.set(m, describeDrift(m, decision.drift));
        else remaining.set(m, new Set(decision.remaining));
        present.set(m, new Set(have?.present ?? []));
      } catch (err) {
        client.close();
        errors.set(m, asError(err));
        return;
      }
      if (keep) {
        clients.set(m, client);
        // Closed before its calls (the agent restarted, or dropped it): its stage connects again.
        client.onClose(() => clients.get(m) === client && clients.delete(m));
      } else client.close();
    });
    if (stale.size > 0) {
      throw new PlanStaleError([...byMachine(stale).values()].join('\n'));
    }

    // 2. Each machine on its own, stage by stage.
    const startedAt = new Map<string, number>();
    const failed = new Set<string>();
    for (const m of machineNames) {
      const err = errors.get(m);
      opts.reporter.event({ type: 'machine-start', machine: m, total: (perMachine.get(m) as Indexed[]).length });
      startedAt.set(m, performance.now());
      if (err !== undefined) {
        failed.add(m);
        machines[m] = { ok: false, ms: 0, error: err.message };
        for (const { index } of perMachine.get(m) as Indexed[]) (results[index] as CallResult).error = { code: (err as LowcloudError).code ?? ErrorCode.AGENT_UNREACHABLE, message: err.message };
        opts.reporter.event({ type: 'machine-done', machine: m, ok: false, ms: 0 });
      }
    }
    const reachable = machineNames.filter((m) => !errors.has(m));
    const uploaded = new Set<string>();
    const machine = (m: string): MachineRun => ({
      name: m,
      clients,
      calls: perMachine.get(m) as Indexed[],
      todo: remaining.get(m) as Set<PlanCall>,
      results,
      failed,
      doc,
      opts,
    });
    const stageList = stages(doc.calls);
    for (const [s, phases] of stageList.entries()) {
      const inStage = reachable.filter((m) => (perMachine.get(m) as Indexed[]).some((x) => phases.has(x.call.phase)));
      await mapLimited(inStage, opts.parallelism, async (m) => {
        if (failed.has(m)) return;
        const run = machine(m);
        try {
          if (!clients.has(m)) clients.set(m, await connectOne(opts.endpoints, m, opts.signer, timeoutMs));
          if (!uploaded.has(m)) {
            uploaded.add(m);
            await uploadBlobs(clients.get(m) as AgentClient, m, [...run.todo], present.get(m) ?? new Set(), doc, opts);
          }
        } catch (err) {
          failed.add(m);
          machines[m] = { ok: false, ms: 0, error: err instanceof Error ? err.message : String(err) };
          return;
        }
        await runCalls(run, run.calls.filter((x) => phases.has(x.call.phase)));
        // Past a stage boundary only when another machine waits for this one; else closed now.
        if (!keep || !stageList.slice(s + 1).some((later) => run.calls.some((x) => later.has(x.call.phase)))) {
          clients.get(m)?.close();
          clients.delete(m);
        }
      });
    }
    for (const m of reachable) {
      const ms = performance.now() - (startedAt.get(m) ?? t0);
      const ok = !failed.has(m);
      machines[m] = { ...machines[m], ok, ms };
      opts.reporter.event({ type: 'machine-done', machine: m, ok, ms });
    }
    // Machines finish in any order; the result lists them by name.
    return { ok: failed.size === 0, calls: results, machines: Object.fromEntries(byMachine(new Map(Object.entries(machines)))), ms: performance.now() - t0 };
  } finally {
    for (const c of clients.values()) c.close();
    opts.reporter.close();
  }
}

/**
 * The plan's phases grouped into stages that machines run without waiting for each other. Within
 * a machine, calls run in list order whatever their phase; across machines only a process whose
 * calls are on two machines (a move: stop here, start there, or blue-green's start there first)
 * needs the earlier call done before the later one starts. A stage boundary is put where such a
 * pair needs one (the fewest boundaries: greedily at the latest phase each pair allows), and all
 * machines finish a stage before the next begins. A plan without moves is one stage.
 */
export function stages(calls: readonly PlanCall[]): Set<number>[] {
  const phases = [...new Set(calls.map((c) => c.phase))].sort((a, b) => a - b);
  // Per process, its calls in plan order; each consecutive pair on two machines must be split.
  const last = new Map<string, PlanCall>();
  const pairs: [number, number][] = [];
  for (const c of calls) {
    const before = last.get(c.process);
    if (before !== undefined && before.machine !== c.machine && before.phase < c.phase) pairs.push([before.phase, c.phase]);
    last.set(c.process, c);
  }
  // A boundary "before phase p" splits a pair (a, b) when a < p <= b: stab every pair, latest first.
  const cuts = new Set<number>();
  let cut = -Infinity;
  for (const [a, b] of pairs.sort((x, y) => x[1] - y[1])) {
    if (cut > a && cut <= b) continue;
    cut = b;
    cuts.add(b);
  }
  const out: Set<number>[] = [];
  for (const p of phases) {
    if (out.length === 0 || cuts.has(p)) out.push(new Set());
    (out.at(-1) as Set<number>).add(p);
  }
  return out;
}

/** What one machine's run needs: its calls in plan order, which of them are still to do, where results go. */
interface MachineRun {
  name: string;
  clients: Map<string, AgentClient>;
  calls: Indexed[];
  todo: Set<PlanCall>;
  results: CallResult[];
  failed: Set<string>;
  doc: PlanDocument;
  opts: ApplyOptions;
}

const RETRIES = 4;

/**
 * Fleets of up to this many machines keep each connection from the check to the calls, whatever
 * the parallelism: a second connect per machine (upgrade, hello, authenticate) is three round trips
 * and two signatures, and 64 idle sockets cost nothing that matters. `bench/apply` (20 agents,
 * parallelism 10) went from 2.5-2.7 to 1.9-2.3 s with this and batches together.
 */
const KEEP_OPEN = 64;

/**
 * A machine's calls of one stage, pipelined over its connection: up to the client's window in
 * flight, sent in plan order (the agent takes them in that order). The first call that fails
 * stops the machine: the calls sent behind it meet a generation it did not move and are refused
 * unmade; they are reported not run, as those never sent.
 *
 * Over a link that may drop: a lost connection fails every call in flight with it. Then the
 * machine is reconnected, and its live state says which of them took effect before the link went
 * (the same rule as a resumed apply); the others are sent again, in order.
 *
 * The calls of the lost connection may still be in the agent's queue when its status is read (the
 * agent takes what it received, connection or not, and status does not wait for the queue). Then a
 * call sent again meets a generation one of those moved, and is refused unmade (STALE_GENERATION):
 * after a loss that refusal is read as one more lost link (reconnect, read the live state, send
 * what it does not show), within the same retry budget. The generation each call is signed with
 * keeps every call made at most once whichever copy the agent takes.
 */
async function runCalls(run: MachineRun, calls: Indexed[]): Promise<void> {
  const { name: m, opts } = run;
  let queue = calls;
  // Losses in a row without a call getting done: past RETRIES the machine fails.
  let losses = 0;
  // Calls sent after a lost link: a stale generation may be the old connection's calls landing.
  let afterLoss = false;
  while (queue.length > 0) {
    const lost: Indexed[] = [];
    const link: { error: Error | null; done: number } = { error: null, done: 0 };
    const client = run.clients.get(m) as AgentClient;
    const inFlight = new Set<Promise<void>>();
    let sent = 0;
    for (const item of queue) {
      if (run.failed.has(m) || link.error !== null) break;
      sent++;
      const r = run.results[item.index] as CallResult;
      const { call } = item;
      if (!run.todo.has(call)) {
        r.status = 'skipped';
        opts.reporter.event({ type: 'call-done', machine: m, call: call.call, process: call.process, ok: true, skipped: true, ms: 0 });
        continue;
      }
      opts.reporter.event({ type: 'call-start', machine: m, call: call.call, process: call.process });
      const t = performance.now();
      const p = callOn(client, call).then(
        () => {
          r.status = 'ok';
          r.ms = performance.now() - t;
          link.done++;
          opts.reporter.event({ type: 'call-done', machine: m, call: call.call, process: call.process, ok: true, ms: r.ms });
        },
        (err: unknown) => {
          r.ms = performance.now() - t;
          const code = (err as LowcloudError).code;
          if ((code === ErrorCode.AGENT_UNREACHABLE || (afterLoss && code === ErrorCode.STALE_GENERATION)) && !run.failed.has(m)) {
            lost.push(item);
            link.error ??= asError(err);
            return;
          }
          if (run.failed.has(m)) {
            // Sent behind a call that failed: refused unmade.
            opts.reporter.event({ type: 'call-done', machine: m, call: call.call, process: call.process, ok: false, notRun: true, ms: r.ms });
            return;
          }
          run.failed.add(m);
          r.status = 'failed';
          r.error = { code: (err as LowcloudError).code ?? ErrorCode.INTERNAL, message: err instanceof Error ? err.message : String(err) };
          opts.reporter.event({ type: 'call-done', machine: m, call: call.call, process: call.process, ok: false, ms: r.ms, error: r.error.message });
        },
      );
      const tracked = p.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
      // The client's window bounds what is in flight; wait here only to stop early on a failure.
      if (inFlight.size >= APPLY_WINDOW) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const lostError = link.error;
    if (lostError === null || run.failed.has(m)) return;
    // The link went: what is left is what was lost (unless it took effect) and what was not sent.
    const unsent = queue.slice(sent);
    lost.sort((x, y) => x.index - y.index);
    losses = link.done > 0 ? 1 : losses + 1;
    let done: Set<PlanCall> | null = null;
    while (done === null) {
      if (losses >= RETRIES) {
        const first = lost[0] as Indexed;
        const r = run.results[first.index] as CallResult;
        run.failed.add(m);
        r.status = 'failed';
        r.error = { code: (lostError as LowcloudError).code ?? ErrorCode.AGENT_UNREACHABLE, message: lostError.message };
        opts.reporter.event({ type: 'call-done', machine: m, call: first.call.call, process: first.call.process, ok: false, ms: r.ms, error: r.error.message });
        return;
      }
      done = await reconnect(run, losses);
      if (done === null) losses++;
    }
    const again: Indexed[] = [];
    for (const item of lost) {
      const r = run.results[item.index] as CallResult;
      if (done.has(item.call)) {
        r.status = 'ok';
        opts.reporter.event({ type: 'call-done', machine: m, call: item.call.call, process: item.call.process, ok: true, ms: r.ms });
      } else again.push(item);
    }
    if (again.length < lost.length) losses = 0; // a call got done: the retry budget starts over
    queue = [...again, ...unsent];
    afterLoss = true;
  }
}

/**
 * After a lost connection: reconnect and read the live state; the calls of the plan it shows done
 * (`decideResume`). null when the agent could not be reached again this time.
 */
async function reconnect(run: MachineRun, attempt: number): Promise<Set<PlanCall> | null> {
  const { name: m, opts } = run;
  await new Promise((r) => setTimeout(r, 200 * attempt));
  let fresh: AgentClient;
  try {
    fresh = await connectOne(opts.endpoints, m, opts.signer, opts.timeoutMs);
  } catch {
    return null;
  }
  run.clients.get(m)?.close();
  run.clients.set(m, fresh);
  let st;
  try {
    st = await fresh.status();
  } catch {
    return null;
  }
  const live = Object.fromEntries(st.processes.map((p) => [p.name, p.specDigest]));
  const decision = decideResume(run.calls.map((x) => x.call), own(run.doc.machines, m)?.before ?? {}, live);
  return decision.ok ? new Set(decision.done) : new Set();
}

async function callOn(client: AgentClient, call: PlanCall): Promise<void> {
  switch (call.call) {
    case 'start':
      await client.start(call.spec);
      return;
    case 'stop':
      await client.stop(call.process);
      return;
    case 'replace-config':
      await client.replaceConfig(call.process, call.config, call.specDigest);
  }
}

/** Upload, once per machine, the binaries and config files its remaining calls need and it lacks (`present`: what it said it has). */
async function uploadBlobs(client: AgentClient, machine: string, calls: PlanCall[], present: Set<string>, doc: PlanDocument, opts: ApplyOptions): Promise<void> {
  const missing = [...new Set(calls.flatMap((c) => callBlobs(c)))].filter((d) => !present.has(d));
  if (missing.length === 0) return;
  let bytes = 0;
  const blobs: [string, Uint8Array][] = [];
  for (const d of missing) {
    const rel = doc.files[d];
    const data = rel === undefined ? null : await opts.readFile(rel);
    if (data === null || rel === undefined) throw new MissingFileError(`blob ${d.slice(0, 12)} (${rel ?? 'unknown path'}) is not readable here; run apply where the plan was made`, rel ?? d);
    if (sha256Hex(data) !== d) throw new BlobChangedError(rel, sha256Hex(data), d);
    bytes += data.length;
    blobs.push([d, data]);
  }
  opts.reporter.event({ type: 'upload', machine, blobs: blobs.length, bytes });
  for (const [d, data] of blobs) await client.putBlob(d, data);
}

/**
 * Files the plan names, read by the same repository rule as when it was planned (nothing outside).
 * `opening`: the file's working tree, opened already (by `up`, for its load).
 */
export function readRelativeTo(file: string, opening?: Promise<WorkingTreeSource>): (rel: string) => Promise<Uint8Array | null> {
  // Opened at the first read (a `git rev-parse`): an apply whose agents have every blob reads none.
  let source: Promise<WorkingTreeSource> | null = opening ?? null;
  return async (rel) => {
    source ??= WorkingTreeSource.open(path.dirname(path.resolve(file)));
    const r = await (await source).read(rel);
    return r.kind === 'file' ? r.bytes : null;
  };
}
