import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { PlanSide, WorkerReply, WorkerSpecs } from './load.js';

/*
 * The worker threads that load the sides of a plan (load.ts), and their early start: `lowcloud
 * plan BASE TARGET` starts them from bin/lowcloud.js before the command's other modules load
 * (prestartPlan), so a worker reads and parses its file while this thread still loads commander,
 * the api package and the plan code (~0.3-0.4 s). This file loads only Node.js modules: types
 * aside, it imports nothing of lowcloud.
 */

/**
 * Above this many bytes of infra files, `plan` reads, parses and resolves each side in a worker
 * thread of its own: the two sides then take the two cores. A worker costs ~0.2 s to start
 * (modules, schema), so small files stay in this thread. LOWCLOUD_PLAN_WORKERS=on|off overrides (the tests run both ways).
 */
export const WORKER_BYTES = 4 << 20;

/** A side worker's young generation (V8's new space), in MiB. */
const YOUNG_GENERATION_MB = 16;

/** LOWCLOUD_PLAN_WORKERS, or undefined where it does not decide. */
export function workersKnob(): boolean | undefined {
  const knob = process.env.LOWCLOUD_PLAN_WORKERS;
  return knob === 'on' || knob === 'off' ? knob === 'on' : undefined;
}

/** Why a worker gave no reply: it failed to run, or exited first. */
export type ThreadEnd = { error: Error } | { exit: number };

/** A worker loading one side (load-worker.ts): its first reply (the summary or its error), then the specs asked for. */
export class SideThread {
  readonly worker: Worker;
  /** Rejects with a ThreadEnd. */
  readonly reply: Promise<WorkerReply>;
  private next: { resolve: (s: WorkerSpecs) => void; reject: (e: ThreadEnd) => void } | undefined;

  constructor(readonly side: PlanSide) {
    this.worker = new Worker(new URL('./load-worker.js', import.meta.url), {
      workerData: side,
      // A small young generation. Nearly all a side allocates lives until the side is resolved
      // (the parsed file), so a bigger one copies no less and only touches more fresh memory: at
      // 100,000 processes on Node.js 24 (whose default here is several times larger than 20's)
      // 16 MiB made the plan's peak RSS 735 -> 525 MiB, its page faults 244,000 -> 185,000 and
      // its CPU 10.4 -> 8.4-9.1 s (docs/performance.md, "plan"); on Node.js 20 about the same.
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
      stdout: false,
      stderr: false,
    });
    // The listeners go on at once: a reply that came before them would be lost.
    this.reply = new Promise((resolve, reject) => {
      const fail = (end: ThreadEnd) => {
        reject(end);
        this.next?.reject(end);
        this.next = undefined;
      };
      this.worker.once('message', (reply: WorkerReply) => {
        resolve(reply);
        this.worker.on('message', (specs: WorkerSpecs) => {
          this.next?.resolve(specs);
          this.next = undefined;
        });
      });
      this.worker.once('error', (error) => fail({ error }));
      this.worker.once('exit', (exit) => fail({ exit }));
    });
    // Failures reach the caller through `reply` or `specs`; this only keeps an unread one quiet.
    this.reply.catch(() => undefined);
  }

  /** The specs asked for (indexes into the summary's names, or all), as JSON, and the state digest; rejects with a ThreadEnd. */
  specs(want: number[] | 'all'): Promise<WorkerSpecs> {
    return new Promise<WorkerSpecs>((resolve, reject) => {
      this.next = { resolve, reject };
      this.worker.postMessage(want);
    });
  }
}

/** Workers prestartPlan started, by file; each is taken once by the load that asks for its side. */
const started = new Map<string, SideThread>();

/**
 * Starts the two workers of `lowcloud plan BASE TARGET [flags]` (`args`: what follows `plan`), where
 * the sides are plainly two files of the working tree and load.ts would load them in workers.
 * Anything else (--base, --live, --help, a flag it does not know) starts nothing: the command then
 * starts its workers where it always did. A worker no load takes is ended by the load
 * (endUnclaimed) and never keeps the process alive.
 */
export function prestartPlan(args: readonly string[]): void {
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith('-')) files.push(a);
    else if (a === '--json' || a === '--no-color' || a === '--detailed-exitcode') continue;
    else if ((a === '--out' || a === '--planner' || a === '--parallelism') && i + 1 < args.length) i++;
    else return;
  }
  if (files.length !== 2) return;
  const knob = workersKnob();
  if (knob === false) return;
  if (knob === undefined) {
    const size = (f: string) => {
      try {
        return statSync(f).size;
      } catch {
        return 0;
      }
    };
    if (size(files[0] as string) + size(files[1] as string) < WORKER_BYTES) return;
  }
  for (const file of files) {
    if (started.has(file)) continue;
    const t = new SideThread({ file });
    t.worker.unref();
    started.set(file, t);
  }
}

/** The worker for a side: the one prestartPlan started for it, or a new one. */
export function sideThread(side: PlanSide): SideThread {
  const early = side.revision === undefined ? started.get(side.file) : undefined;
  if (early === undefined) return new SideThread(side);
  started.delete(side.file);
  early.worker.ref();
  return early;
}

/** Ends the workers prestartPlan started that no load took. */
export function endUnclaimed(): void {
  for (const t of started.values()) void t.worker.terminate();
  started.clear();
}
