import { MessageChannel, Worker } from 'node:worker_threads';
import type { GuestBoot } from '../common/protocol.js';
import type { GuestExit } from '../types.js';
import { startGpuThread } from './gpu/start.js';
import type { WorkerResult } from './worker-result.js';

/**
 * One guest in a guest host: its own worker thread (its own V8 isolate, heap capped from the
 * memory grant), and how it ended. Exit status: the guest's own code for an exit; 134 for a trap
 * (SIGABRT-like, like a native program that aborts); 137 for a violation; 143 when stopped.
 */
export class Instance {
  private readonly worker: Worker;
  private ended = false;
  /** With a gpu grant: its GPU device thread runs (see guest/gpu/start.ts). */
  readonly gpu: boolean;
  /** A preview1 guest's restart cell (worker.ts `sleep`): set, its clock wait unwinds it; null where it cannot. */
  private readonly control: SharedArrayBuffer | null;
  /** Waits for the worker to say its guest unwound (a restart in place). */
  private unwound: (() => void) | null = null;

  constructor(
    public boot: GuestBoot,
    private onEnd: (exit: GuestExit, status: number) => void,
  ) {
    // A guest with a gpu grant talks to its GPU device thread over this channel.
    const gpuChannel = boot.gpu === undefined ? null : new MessageChannel();
    this.gpu = gpuChannel !== null;
    this.control = boot.kind === 'module' && !this.gpu ? new SharedArrayBuffer(4) : null;
    this.worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: { ...boot, gpuPort: gpuChannel?.port1 ?? null, control: this.control },
      transferList: gpuChannel === null ? [] : [gpuChannel.port1],
      stdin: false,
      stdout: false,
      stderr: false,
      ...(boot.workerHeapMb === null ? {} : { resourceLimits: { maxOldGenerationSizeMb: boot.workerHeapMb, maxYoungGenerationSizeMb: 8 } }),
    });
    this.worker.on('message', (r: WorkerResult) => {
      if (r.kind === 'unwound') this.unwound?.();
      else if (r.kind === 'exit') this.end(r, r.code);
      else if (r.kind === 'trap') {
        process.stderr.write(`lowcloud: guest trapped: ${r.message}\n`);
        this.end(r, 134);
      } else this.end(r, 137);
    });
    this.worker.on('error', (err: Error & { code?: string }) => {
      // The worker's resourceLimits: its heap past the cap derived from the memory grant.
      if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') this.end({ kind: 'violation', grant: 'memory', detail: err.message }, 137);
      else this.end({ kind: 'trap', message: err.message }, 134);
    });
    if (gpuChannel !== null && boot.gpu !== undefined) {
      // The device thread (and Dawn with it) only once the guest's thread runs: see device-thread.ts.
      const { port2 } = gpuChannel;
      const { memoryBytes } = boot.gpu;
      this.worker.once('online', () => startGpuThread(port2, memoryBytes).on('error', (err) => this.end({ kind: 'trap', message: `GPU device thread: ${err.message}` }, 134)));
    }
    this.worker.on('exit', () => this.end({ kind: 'trap', message: 'guest worker ended without a result' }, 134));
  }

  /**
   * Start it again as `next` on the same thread, where its guest waits in a clock wait (then its
   * code unwinds from there, the old guest ends as stopped, and the thread runs `next`'s module):
   * no new thread, isolate or module load. False, changing nothing but the request, where it
   * cannot (a component, a gpu grant, a guest that computes or has ended): then stop it and start anew.
   */
  async restartInPlace(next: GuestBoot, onEnd: (exit: GuestExit, status: number) => void, waitMs = 50): Promise<boolean> {
    if (this.control === null || this.ended || next.kind !== 'module' || next.gpu !== undefined) return false;
    const cell = new Int32Array(this.control);
    let timer: NodeJS.Timeout | undefined;
    const unwound = await new Promise<boolean>((resolve) => {
      this.unwound = () => resolve(true);
      timer = setTimeout(() => resolve(false), waitMs);
      Atomics.store(cell, 0, 1);
      Atomics.notify(cell, 0);
    });
    clearTimeout(timer);
    this.unwound = null;
    if (!unwound || this.ended) return false;
    this.end({ kind: 'stopped' }, 143);
    this.boot = next;
    this.onEnd = onEnd;
    this.ended = false;
    this.worker.postMessage(next);
    return true;
  }

  /** Stop it: its end is reported now; resolves once its thread is gone (at once with a GPU device thread). */
  async stop(): Promise<void> {
    // With a GPU device thread the process ends by exitGuestHost, not by terminating threads.
    const gone = this.gpu ? Promise.resolve() : this.worker.terminate();
    this.end({ kind: 'stopped' }, 143);
    // terminate() rejects only for a thread that is already gone: what this waits for.
    await gone.catch(() => undefined);
  }

  private end(exit: GuestExit, status: number): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd(exit, status);
  }
}
