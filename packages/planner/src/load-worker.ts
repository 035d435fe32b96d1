// One side of `lowcloud plan`, loaded in a worker thread (load.ts: loadForPlan): read, parse,
// check and resolve the file, send back each process's name, machine and digest, then the specs
// the plan asks for.
import { parentPort, workerData } from 'node:worker_threads';
import { InvalidInputError, LowcloudError, type ProcessSpec } from '@lowcloud/api';
import { stateDigest } from './plan/document.js';
import { loadFromGit, loadFromWorkingTree, type PlanSide, type WorkerError, type WorkerReply, type WorkerSpecs, type WorkerSummary } from './load.js';

const side = workerData as PlanSide;
const port = parentPort;
let reply: WorkerReply;
let specs: ProcessSpec[] = [];
try {
  const r = await (side.revision === undefined ? loadFromWorkingTree(side.file) : loadFromGit(side.file, side.revision));
  const names: string[] = [];
  const machineOf: string[] = [];
  const digests: string[] = [];
  const sealed: WorkerSummary['sealed'] = {};
  for (const p of Object.values(r.processes)) {
    if (p.sealed.length > 0) sealed[names.length] = p.sealed;
    names.push(p.name);
    machineOf.push(p.machine);
    digests.push(p.digest);
    specs.push(p.spec);
  }
  const summary: WorkerSummary = {
    label: r.label,
    file: r.file,
    machines: r.machines,
    blobs: r.blobs,
    stateDigest: stateDigest(r),
    names: names.join('\n'),
    machineOf: machineOf.join('\n'),
    digests: digests.join('\n'),
    sealed,
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
port?.once('message', (want: number[] | 'all') => {
  const out: WorkerSpecs = { specs: want === 'all' ? specs.map((s) => JSON.stringify(s)) : want.map((i) => JSON.stringify(specs[i])) };
  specs = [];
  port.postMessage(out);
  port.close();
});
port?.postMessage(reply);
