import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import type { MultiBar, SingleBar } from 'cli-progress';

/**
 * cli-progress, loaded when a terminal shows bars: ~13 ms of every `up`'s and `apply`'s start-up
 * that a pipe or CI never used (it is CommonJS, so a synchronous require loads it on demand).
 */
const cliProgress = () => createRequire(import.meta.url)('cli-progress') as typeof CliProgress;

/** What an apply reports as it goes; one event stream feeds both displays and the final summary. */
export type ApplyEvent =
  | { type: 'machine-start'; machine: string; total: number }
  | { type: 'upload'; machine: string; blobs: number; bytes: number }
  | { type: 'call-start'; machine: string; call: string; process: string }
  | { type: 'call-done'; machine: string; call: string; process: string; ok: boolean; skipped?: boolean; notRun?: boolean; ms: number; error?: string }
  | { type: 'machine-done'; machine: string; ok: boolean; ms: number };

export interface ProgressReporter {
  event(e: ApplyEvent): void;
  close(): void;
}

/**
 * A live display on a terminal (one bar per machine: calls done / total and the current call), plain
 * timestamped lines otherwise, because CI logs are read after the fact and cannot redraw.
 */
export function createReporter(stream: NodeJS.WriteStream = process.stderr, now: () => Date = () => new Date()): ProgressReporter {
  return stream.isTTY === true && process.env.CI === undefined ? new TtyReporter(stream) : new LineReporter(stream, now);
}

/**
 * One timestamped line per step. The lines of one turn of the event loop go out as one write at
 * its end (`close` writes what is left at once): an apply of 1,000 calls makes its 1,000
 * `call-start` lines in one turn and reads its replies in a few, and 2,000 writes to a pipe (a
 * system call each: stderr is synchronous there) were ~40 ms of `up`'s 1,000 starts, on the way
 * from the plan to the first call sent.
 */
export class LineReporter implements ProgressReporter {
  private pending = '';

  constructor(
    private readonly out: { write(s: string): unknown },
    private readonly now: () => Date = () => new Date(),
  ) {}

  event(e: ApplyEvent): void {
    const line = describe(e);
    if (line === null) return;
    if (this.pending === '') setImmediate(() => this.flush());
    this.pending += `${this.now().toISOString()} ${line}\n`;
  }

  close(): void {
    this.flush();
  }

  private flush(): void {
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    this.out.write(text);
  }
}

/** Machines that get a bar of their own on a terminal; the rest share one, so a fleet's display stays a screen. */
export const TTY_BARS = 16;

class TtyReporter implements ProgressReporter {
  private readonly multibar: MultiBar;
  private readonly bars = new Map<string, SingleBar>();
  private readonly done = new Map<string, number>();
  /** The shared bar of the machines past TTY_BARS: their calls together. */
  private rest: { bar: SingleBar; machines: number; total: number; done: number; finished: number } | null = null;

  constructor(stream: NodeJS.WriteStream) {
    const { MultiBar, Presets } = cliProgress();
    this.multibar = new MultiBar(
      {
        stream,
        clearOnComplete: false,
        hideCursor: true,
        format: ' {machine} [{bar}] {value}/{total} {status}',
        barsize: 20,
      },
      Presets.shades_grey,
    );
  }

  event(e: ApplyEvent): void {
    if (e.type === 'machine-start' && this.bars.size >= TTY_BARS) {
      this.rest ??= { bar: this.multibar.create(0, 0, { machine: 'others'.padEnd(12), status: '' }), machines: 0, total: 0, done: 0, finished: 0 };
      this.rest.machines++;
      this.rest.total += e.total;
      this.rest.bar.setTotal(this.rest.total);
    }
    if (e.type !== 'machine-start' && !this.bars.has(e.machine) && this.rest !== null) {
      const r = this.rest;
      if (e.type === 'call-done') r.done++;
      if (e.type === 'machine-done') r.finished++;
      r.bar.update(r.done, { status: `${r.finished}/${r.machines} more machine(s) done` });
      return;
    }
    switch (e.type) {
      case 'machine-start':
        if (this.bars.size >= TTY_BARS) return;
        this.done.set(e.machine, 0);
        this.bars.set(e.machine, this.multibar.create(e.total, 0, { machine: e.machine.padEnd(12), status: 'connecting' }));
        return;
      case 'upload':
        this.bars.get(e.machine)?.update({ status: `uploading ${e.blobs} blob(s), ${e.bytes} bytes` });
        return;
      case 'call-start':
        this.bars.get(e.machine)?.update({ status: `${e.call} ${e.process}` });
        return;
      case 'call-done': {
        const n = (this.done.get(e.machine) ?? 0) + 1;
        this.done.set(e.machine, n);
        this.bars.get(e.machine)?.update(n, { status: e.ok ? `${e.call} ${e.process} ok` : e.notRun === true ? `${e.call} ${e.process} not run` : `${e.call} ${e.process} FAILED` });
        return;
      }
      case 'machine-done':
        this.bars.get(e.machine)?.update({ status: e.ok ? `done in ${formatMs(e.ms)}` : `failed after ${formatMs(e.ms)}` });
        return;
    }
  }

  close(): void {
    this.multibar.stop();
  }
}

function describe(e: ApplyEvent): string | null {
  switch (e.type) {
    case 'machine-start':
      return `${e.machine}: ${e.total} call(s) to make`;
    case 'upload':
      return `${e.machine}: uploading ${e.blobs} blob(s), ${e.bytes} bytes`;
    case 'call-start':
      return `${e.machine}: ${e.call} ${e.process} ...`;
    case 'call-done':
      if (e.skipped === true) return `${e.machine}: ${e.call} ${e.process} already done, skipped`;
      if (e.notRun === true) return `${e.machine}: ${e.call} ${e.process} not run (an earlier call on ${e.machine} failed)`;
      return e.ok
        ? `${e.machine}: ${e.call} ${e.process} ok (${formatMs(e.ms)})`
        : `${e.machine}: ${e.call} ${e.process} FAILED (${formatMs(e.ms)}): ${e.error ?? 'unknown error'}`;
    case 'machine-done':
      return `${e.machine}: ${e.ok ? 'done' : 'failed'} in ${formatMs(e.ms)}`;
  }
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`;
}
