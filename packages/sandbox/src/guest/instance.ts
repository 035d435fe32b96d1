import { Worker } from 'node:worker_threads';
import type { GuestBoot } from '../common/protocol.js';
import type { GuestExit } from '../types.js';
import type { WorkerResult } from './worker-result.js';

/**
 * One guest in a guest host: its own worker thread (its own V8 isolate, heap capped from the
 * memory grant), and how it ended. Exit status: the guest's own code for an exit; 134 for a trap
 * (SIGABRT-like, like a native program that aborts); 137 for a violation; 143 when stopped.
 */
export class Instance {
  private readonly worker: Worker;
  private ended = false;

  constructor(
    readonly boot: GuestBoot,
    private readonly onEnd: (exit: GuestExit, status: number) => void,
  ) {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: boot,
      stdin: false,
      stdout: false,
      stderr: false,
      ...(boot.workerHeapMb === null ? {} : { resourceLimits: { maxOldGenerationSizeMb: boot.workerHeapMb, maxYoungGenerationSizeMb: 8 } }),
    });
    this.worker.on('message', (r: WorkerResult) => {
      if (r.kind === 'exit') this.end(r, r.code);
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
    this.worker.on('exit', () => this.end({ kind: 'trap', message: 'guest worker ended without a result' }, 134));
  }

  stop(): void {
    void this.worker.terminate();
    this.end({ kind: 'stopped' }, 143);
  }

  private end(exit: GuestExit, status: number): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd(exit, status);
  }
}
