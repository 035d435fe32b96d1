import type { GuestBoot } from '../common/protocol.js';
import type { GuestExit as Exit } from '../types.js';
import { openMounts } from './core/mounts.js';
import { GuestExit } from './exit.js';
import { preview1Imports } from './preview1/index.js';

/** A stop request, thrown into a guest suspended in a WASI call. */
class Stopped extends Error {}

type Jspi = {
  Suspending: new (f: (...a: never[]) => Promise<unknown>) => unknown;
  promising: (f: (...a: never[]) => unknown) => (...a: unknown[]) => Promise<unknown>;
};

export interface SuspendingIo {
  out(fd: 1 | 2, data: Uint8Array): void;
  ended(exit: Exit, status: number): void;
}

/**
 * One preview1 guest of a shared guest host: an instance of a module compiled once per host, run
 * through `WebAssembly.promising` so that its clock waits (poll_oneoff, which `sleep` and friends
 * become) and `sched_yield` suspend it alone and hand the thread to the other guests. It has its
 * config files (from memory) but no directories, no stdin and no sockets (preview1 has none); its
 * output goes to `io.out`. Exit
 * status as a process guest's: its own code, 134 for a trap, 143 when stopped.
 */
export class SuspendingGuest {
  private instance: WebAssembly.Instance | null = null;
  private memory: WebAssembly.Memory | null = null;
  /** Settles the wait the guest is suspended in, with a stop when `stop` asks. */
  private wake: ((stop: boolean) => void) | null = null;
  private stopRequested = false;
  private done = false;
  /** Thread time spent in this guest's code and calls (measured between suspensions). */
  private cpuMs = 0;
  private since = 0;

  constructor(
    readonly boot: GuestBoot,
    private readonly module: WebAssembly.Module,
    private readonly io: SuspendingIo,
  ) {}

  start(): void {
    // Stopped before it ran (its host defers each start to after the adds it read with it).
    if (this.stopRequested) return this.end({ kind: 'stopped' }, 143);
    const jspi = WebAssembly as unknown as Jspi;
    const wait = (ms: number) => this.suspend((resume) => (ms > 0 ? setTimeout(resume, ms) : setImmediate(resume)));
    const { imports, memory } = preview1Imports({
      args: this.boot.argv,
      env: this.boot.env,
      // Config files only, served from memory (the host side sent their bytes): no directory, no host file.
      preopens: openMounts([], this.boot.config, undefined).preopens,
      // The bytes are copied: the guest's memory view is reused by its next write.
      stdout: (b) => this.io.out(1, b.slice()),
      stderr: (b) => this.io.out(2, b.slice()),
      stdin: null,
      wait,
    });
    const wasi = imports as Record<string, unknown>;
    // JSPI wraps every call that may return a promise; the rest stay plain (no suspension cost).
    wasi.poll_oneoff = new jspi.Suspending(imports.poll_oneoff as (...a: never[]) => Promise<number>);
    wasi.sched_yield = new jspi.Suspending(() => wait(0).then(() => 0));
    this.since = performance.now();
    try {
      this.instance = new WebAssembly.Instance(this.module, { wasi_snapshot_preview1: wasi as WebAssembly.ModuleImports });
    } catch (err) {
      // E.g. no address space left for one more memory: this guest does not start, the others run on.
      this.end({ kind: 'trap', message: `instantiating: ${err instanceof Error ? err.message : String(err)}` }, 134);
      return;
    }
    const exported = this.instance.exports as { memory?: WebAssembly.Memory; _start?: () => void };
    if (!(exported.memory instanceof WebAssembly.Memory) || typeof exported._start !== 'function') {
      this.end({ kind: 'trap', message: 'the module is not a WASI command: it must export memory and _start' }, 134);
      return;
    }
    memory.memory = exported.memory;
    this.memory = exported.memory;
    jspi.promising(exported._start)().then(
      () => this.end({ kind: 'exit', code: 0 }, 0),
      (err: unknown) => {
        if (err instanceof GuestExit) this.end({ kind: 'exit', code: err.code }, err.code);
        else if (err instanceof Stopped) this.end({ kind: 'stopped' }, 143);
        else this.end({ kind: 'trap', message: err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err) }, 134);
      },
    );
  }

  /** Suspend the guest until `schedule` resumes it, or a stop unwinds it from the call it waits in. */
  private suspend(schedule: (resume: () => void) => NodeJS.Timeout | NodeJS.Immediate): Promise<void> {
    if (this.stopRequested) return Promise.reject(new Stopped());
    this.cpuMs += performance.now() - this.since;
    return new Promise<void>((resolve, reject) => {
      const timer = schedule(() => this.wake?.(false));
      this.wake = (stop) => {
        this.wake = null;
        clearTimeout(timer as NodeJS.Timeout);
        clearImmediate(timer as NodeJS.Immediate);
        this.since = performance.now();
        if (stop) reject(new Stopped());
        else resolve();
      };
    });
  }

  /** Ends the guest now when it waits in a call (always, seen from this thread between guests' turns). */
  stop(): void {
    this.stopRequested = true;
    this.wake?.(true);
  }

  memoryBytes(): number {
    return this.memory?.buffer.byteLength ?? 0;
  }

  cpuSeconds(): number {
    return (this.cpuMs + (this.wake === null && !this.done ? performance.now() - this.since : 0)) / 1000;
  }

  private end(exit: Exit, status: number): void {
    if (this.done) return;
    this.done = true;
    if (this.wake === null) this.cpuMs += performance.now() - this.since;
    this.instance = null;
    this.memory = null;
    this.io.ended(exit, status);
  }
}
