// One side of `lowcloud plan`, loaded in a worker thread (load.ts: loadForPlan): read, parse,
// check and resolve the file, send back each process's name, machine and digest, then the specs
// the plan asks for and the side's state digest.
import { parentPort, workerData } from 'node:worker_threads';
import { InvalidInputError, LowcloudError, type ResolvedDigests } from '@lowcloud/api';
import { stateDigestOf } from './plan/document.js';
import { loadDigests, type PlanSide, type WorkerError, type WorkerReply, type WorkerSpecs, type WorkerSummary } from './load.js';

const side = workerData as PlanSide;
const port = parentPort;
let reply: WorkerReply;
let loaded: ResolvedDigests | undefined;
try {
  const r = await loadDigests(side);
  loaded = r;
  const summary: WorkerSummary = {
    label: r.label,
    file: r.file,
    machines: r.machines,
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
