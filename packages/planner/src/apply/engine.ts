import path from 'node:path';
import { ErrorCode, LowcloudError, sha256Hex, WorkingTreeSource, type KeyPair } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { callBlobs } from '../plan/calls.js';
import type { PlanDocument } from '../plan/document.js';
import { asError, BlobChangedError, MissingFileError, PlanStaleError } from '../errors.js';
import type { PlanCall } from '../plan/types.js';
import { byMachine, connectAll, type Endpoints } from './live.js';
import { mapLimited } from './limit.js';
import type { ProgressReporter } from './progress.js';
import { decideResume, describeDrift } from './resume.js';

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
  parallelism: number;
  /** Reads a blob by the path the plan recorded (relative to the target infra file). */
  readFile(relPath: string): Promise<Uint8Array | null>;
  reporter: ProgressReporter;
  timeoutMs?: number;
}

/**
 * Executes a plan document against the agents. First every machine is checked: its key (the
 * client verifies the pinned key) and its live state against the plan (a stale plan is refused
 * before any call, naming what moved). Then blobs the agents lack are uploaded, and the calls run
 * phase by phase, machines in parallel. Calls already done (a re-run after a partial failure, or
 * an applied plan) are skipped, so running the same apply again resumes.
 */
export async function applyPlan(doc: PlanDocument, opts: ApplyOptions): Promise<ApplyResult> {
  const t0 = performance.now();
  const machineNames = [...new Set([...doc.calls.map((c) => c.machine)])].sort();
  const results: CallResult[] = doc.calls.map((c) => ({ machine: c.machine, call: c.call, process: c.process, status: 'not-run', ms: 0 }));
  const machines: ApplyResult['machines'] = {};
  if (doc.calls.length === 0) return { ok: true, calls: [], machines, ms: performance.now() - t0 };

  const { clients, errors } = await connectAll(opts.endpoints, machineNames, opts.signer, opts.timeoutMs);
  try {
    // 1. Check every reachable machine before any call.
    const remaining = new Map<string, PlanCall[]>();
    const stale: string[] = [];
    for (const m of machineNames) {
      const client = clients.get(m);
      if (client === undefined) continue;
      let st;
      try {
        st = await client.status();
      } catch (err) {
        clients.delete(m);
        client.close();
        errors.set(m, asError(err));
        continue;
      }
      const live = Object.fromEntries(st.processes.map((p) => [p.name, p.specDigest]));
      const mine = doc.calls.filter((c) => c.machine === m);
      const decision = decideResume(mine, doc.machines[m]?.before ?? {}, live);
      if (!decision.ok) stale.push(describeDrift(m, decision.drift));
      else remaining.set(m, decision.remaining);
    }
    if (stale.length > 0) {
      throw new PlanStaleError(stale.join('\n'));
    }

    // 2. Per machine, in phases: upload what it lacks, then its calls in order.
    const phases = [...new Set(doc.calls.map((c) => c.phase))].sort((a, b) => a - b);
    const startedAt = new Map<string, number>();
    for (const m of machineNames) {
      const err = errors.get(m);
      const total = doc.calls.filter((c) => c.machine === m).length;
      opts.reporter.event({ type: 'machine-start', machine: m, total });
      startedAt.set(m, performance.now());
      if (err !== undefined) {
        machines[m] = { ok: false, ms: 0, error: err.message };
        for (const r of results) if (r.machine === m) r.error = { code: (err as LowcloudError).code ?? ErrorCode.AGENT_UNREACHABLE, message: err.message };
        opts.reporter.event({ type: 'machine-done', machine: m, ok: false, ms: 0 });
      }
    }
    const failed = new Set<string>(errors.keys());
    await mapLimited([...clients.keys()], opts.parallelism, async (m) => {
      try {
        await uploadBlobs(clients.get(m) as AgentClient, m, remaining.get(m) ?? [], doc, opts);
      } catch (err) {
        failed.add(m);
        machines[m] = { ok: false, ms: 0, error: err instanceof Error ? err.message : String(err) };
      }
    });
    for (const phase of phases) {
      await mapLimited([...clients.keys()].filter((m) => !failed.has(m)), opts.parallelism, async (m) => {
        const todo = new Set(remaining.get(m) ?? []);
        for (const [i, call] of doc.calls.entries()) {
          if (call.machine !== m || call.phase !== phase || failed.has(m)) continue;
          const r = results[i] as CallResult;
          if (!todo.has(call)) {
            r.status = 'skipped';
            opts.reporter.event({ type: 'call-done', machine: m, call: call.call, process: call.process, ok: true, skipped: true, ms: 0 });
            continue;
          }
          opts.reporter.event({ type: 'call-start', machine: m, call: call.call, process: call.process });
          const t = performance.now();
          try {
            await runWithReconnect(m, call, clients, opts);
            r.status = 'ok';
          } catch (err) {
            r.status = 'failed';
            r.error = { code: (err as LowcloudError).code ?? ErrorCode.INTERNAL, message: err instanceof Error ? err.message : String(err) };
            failed.add(m);
          }
          r.ms = performance.now() - t;
          opts.reporter.event({ type: 'call-done', machine: m, call: call.call, process: call.process, ok: r.status === 'ok', ms: r.ms, ...(r.error === undefined ? {} : { error: r.error.message }) });
        }
      });
    }
    for (const m of clients.keys()) {
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

const RETRIES = 4;

/**
 * A call over a link that may drop: on a lost connection, reconnect, look at the live state to see
 * whether the call took effect before the link went, and retry only if it did not.
 */
async function runWithReconnect(machine: string, call: PlanCall, clients: Map<string, AgentClient>, opts: ApplyOptions): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const client = clients.get(machine) as AgentClient;
    try {
      await run(client, call);
      return;
    } catch (err) {
      if ((err as LowcloudError).code !== ErrorCode.AGENT_UNREACHABLE || attempt >= RETRIES) throw err;
    }
    await new Promise((r) => setTimeout(r, 200 * attempt));
    let fresh: AgentClient;
    try {
      const ep = opts.endpoints[machine];
      // Programmer error: a machine is only reconnected after it was connected through its endpoint.
      if (ep === undefined) throw new Error(`no endpoint for ${machine}`);
      fresh = await AgentClient.connect(ep.url, { ...(ep.key === undefined ? {} : { pinnedKey: ep.key }), signer: opts.signer, timeoutMs: opts.timeoutMs ?? 15_000 });
    } catch (err) {
      if (attempt + 1 >= RETRIES) throw err;
      continue;
    }
    clients.get(machine)?.close();
    clients.set(machine, fresh);
    const live = (await fresh.status()).processes.find((p) => p.name === call.process);
    const done = call.call === 'stop' ? live === undefined : live?.specDigest === call.specDigest;
    if (done) return;
  }
}

async function run(client: AgentClient, call: PlanCall): Promise<void> {
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

/** Upload, once per machine, the binaries and config files its remaining calls need and it lacks. */
async function uploadBlobs(client: AgentClient, machine: string, calls: PlanCall[], doc: PlanDocument, opts: ApplyOptions): Promise<void> {
  const needed = new Set<string>();
  for (const c of calls) for (const d of callBlobs(c)) needed.add(d);
  if (needed.size === 0) return;
  const st = await client.blobStatus([...needed]);
  const missing = [...needed].filter((d) => !st.present.includes(d));
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
  if (blobs.length > 0) opts.reporter.event({ type: 'upload', machine, blobs: blobs.length, bytes });
  for (const [d, data] of blobs) await client.putBlob(d, data);
}

/** Files the plan names, read by the same repository rule as when it was planned (nothing outside). */
export function readRelativeTo(file: string): (rel: string) => Promise<Uint8Array | null> {
  const source = WorkingTreeSource.open(path.dirname(path.resolve(file)));
  return async (rel) => {
    const r = await (await source).read(rel);
    return r.kind === 'file' ? r.bytes : null;
  };
}
