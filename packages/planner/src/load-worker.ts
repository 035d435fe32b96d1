// One side of `lowcloud plan`, loaded in a worker thread (load.ts: loadForPlan): read, parse,
// check and resolve the file, send back each process's name, machine and digest, then the specs
// the plan asks for and the side's state digest.
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { ResolvedDigests } from '@lowcloud/api/infra';
import { WorkingTreeSource } from '@lowcloud/api/infra/file-source';
import type { WorkerError, WorkerReply, WorkerSpecs, WorkerSummary } from './load.js';
import type { PlanSide } from './side-load.js';

const side = workerData as PlanSide;
// The working tree is opened first (`git rev-parse`, a process of its own: ~30 ms) and the rest
// loaded meanwhile: only what a side needs (side-load.ts, the api's infra entry, the state
// digest), not the plan code or the api's barrel, each module being start-up time on its path.
const opening = side.revision === undefined ? WorkingTreeSource.open(path.dirname(path.resolve(side.file))) : undefined;
// Not swallowed: loadDigests awaits `opening` below, inside the try that reports a side's errors;
// this only keeps a rejection from counting as unhandled while the modules load.
opening?.catch(() => undefined);
const [{ InvalidInputError, LowcloudError }, { stateDigestOf }, { loadDigests }] = await Promise.all([
  import('@lowcloud/api/infra'),
  import('./plan/state-digest.js'),
  import('./side-load.js'),
]);
const port = parentPort;
let reply: WorkerReply;
let loaded: ResolvedDigests | undefined;
try {
  const r = await loadDigests(side, opening);
  loaded = r;
  const summary: WorkerSummary = {
    label: r.label,
    file: r.file,
    machines: JSON.stringify(r.machines),
    blobs: r.blobs,
    names: r.names.join('\n'),
    machineOf: r.machineOf.join('\n'),
    digests: r.digests.join('\n'),
    sealed: r.sealed,
  };
  reply = { ok: true, side: summary };
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err));
  const error: WorkerError = { message: e.message, ...(e.stack === undefined ? {} : { stack: e.stack }) };
  if (err instanceof LowcloudError) {
    error.code = err.code;
    if (err instanceof InvalidInputError) error.diagnostics = err.diagnostics;
    else if (err.details !== undefined) error.details = err.details;
  }
  reply = { ok: false, error };
}
let stateDigest = '';
port?.once('message', (want: number[] | 'all') => {
  const r = loaded;
  const spec = (i: number) => JSON.stringify((r as ResolvedDigests).spec(i));
  const out: WorkerSpecs = { specs: r === undefined ? [] : want === 'all' ? r.names.map((_, i) => spec(i)) : want.map(spec), stateDigest };
  loaded = undefined;
  port.postMessage(out);
  port.close();
});
port?.postMessage(reply);
// Worked out once the summary is on its way: while the main thread pairs the two sides' processes
// and asks for specs (~0.1 s at 100,000 processes), not before the summary, where it delayed the plan.
if (loaded !== undefined) stateDigest = stateDigestOf(loaded.machines, loaded.names, loaded.machineOf, loaded.digests);
