import fs from 'node:fs';
import { type MessagePort, Worker } from 'node:worker_threads';
import type { GpuThreadNote } from './calls.js';
import type { GpuThreadData } from './device-thread.js';

/**
 * Starts the GPU device thread of a guest with a gpu grant. Dawn's OpenGL backend (the software
 * adapter where there is no GPU) needs EGL without a display; set in the process's own environment,
 * which the thread's native code reads.
 */
export function startGpuThread(port: MessagePort, memoryBytes: number): Worker {
  process.env.EGL_PLATFORM ??= 'surfaceless';
  const thread = new Worker(new URL('./device-thread.js', import.meta.url), { workerData: { port, memoryBytes } satisfies GpuThreadData, transferList: [port] });
  thread.on('message', (n: GpuThreadNote) => {
    // The guest host's stderr is the operator's (not the guest's): which adapter runs the guest's work.
    if (n.kind === 'adapter') process.stderr.write(`lowcloud: gpu adapter: ${n.name}\n`);
    else process.stderr.write(`lowcloud: gpu unavailable: ${n.reason}\n`);
  });
  return thread;
}

/**
 * Ends the guest host. With a GPU device thread, process.exit would wait for that thread, which a
 * running submission holds inside Dawn for as long as the shader runs (a runaway one: for ever), so
 * the process ends at once by SIGKILL; how each guest ended is already told (exit record, message).
 * The guests' threads must not end before that either: cleaning up after one, the main thread
 * waited for the device thread too (guest/worker.ts keeps them).
 */
export function exitGuestHost(status: number, instances: readonly { gpu: boolean }[]): void {
  if (instances.some((i) => i.gpu)) {
    process.kill(process.pid, 'SIGKILL');
    // Inside the wall this process is its pid namespace's init, which ignores a signal it sends
    // itself; a fault still ends it, and abort() comes to one when SIGABRT does not end it. Its
    // native backtrace would only alarm whoever reads the guest host's stderr.
    fs.closeSync(2);
    process.abort();
  }
  process.exit(status);
}
