import type { MessagePort } from 'node:worker_threads';
import { type GpuCall, type GpuOp, GpuStatus, TIMED_OPS } from './calls.js';

/**
 * The one host implementation of the GPU interface as the guest's thread sees it: a call handed to
 * the GPU device thread (device-thread.ts) and waited for. Both bindings are thin layers over it:
 * the core-module import `lowcloud:gpu` (imports.ts) and the component interface `lowcloud:gpu/gpu`
 * (component.ts).
 */
export interface GpuAnswer {
  /** A GpuStatus. */
  status: number;
  /** A handle, or a length (of a name, of bytes mapped). */
  value: number;
  /** Bytes coming back (a mapped range, a name), as many as asked for. */
  reply: Uint8Array | null;
}
export interface GpuCaller {
  (op: GpuOp, replyBytes?: number): GpuAnswer;
  /** The most bytes one call may ask back: no buffer holds more than the gpu grant's memory. */
  readonly maxReplyBytes: number;
}

/** Room for a name or an error message even under a tiny grant. */
const MIN_REPLY_BYTES = 64 * 1024;

/** Thrown through the guest when a call outlives its time: the guest ends with a gpu violation. */
export class GpuTimeBudgetExceeded extends Error {
  constructor(readonly detail: string) {
    super(detail);
  }
}

/** A guest that imports the GPU interface without a gpu grant: it does not start. */
export class GpuGrantMissing extends Error {
  constructor(what: string, iface: string) {
    super(`the ${what} imports the GPU interface (${iface}) but the process has no gpu grant: add grants.gpu: { memory: 64MiB } to the process in the infra file, or --gpu-memory 64MiB to lowcloud run`);
  }
}

/** Untimed calls (buffer creation, shader compilation) may still take a while on a software adapter. */
const UNTIMED_LIMIT_MS = 60_000;

/**
 * Each call synchronous: the guest's thread waits on Atomics.wait. A call that runs the GPU
 * (submit, wait, map for reading) waits at most the grant's time budget; past it the guest ends.
 */
export function gpuCaller(port: MessagePort, grant: { memoryBytes: number; submitMs: number }): GpuCaller {
  const maxReplyBytes = Math.max(grant.memoryBytes, MIN_REPLY_BYTES);
  const caller = (op: GpuOp, replyBytes = 0): GpuAnswer => {
    // The reply buffer is made here, before the device thread sees the call: a length from the
    // guest past what any buffer under the grant can hold is refused before it is allocated.
    if (replyBytes > maxReplyBytes) return { status: GpuStatus.invalid, value: 0, reply: null };
    const control = new Int32Array(new SharedArrayBuffer(12));
    const reply = replyBytes > 0 ? new SharedArrayBuffer(replyBytes) : null;
    port.postMessage({ call: op, control, reply } satisfies GpuCall);
    const timed = TIMED_OPS.has(op.op);
    const limit = timed ? grant.submitMs : UNTIMED_LIMIT_MS;
    if (Atomics.wait(control, 0, 0, limit) === 'timed-out') {
      throw new GpuTimeBudgetExceeded(`the GPU call ${op.op} ran past ${limit} ms${timed ? ", the gpu grant's time budget per submission" : ''}`);
    }
    return { status: Atomics.load(control, 1), value: Atomics.load(control, 2), reply: reply === null ? null : new Uint8Array(reply) };
  };
  return Object.assign(caller, { maxReplyBytes });
}
