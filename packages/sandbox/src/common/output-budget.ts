/**
 * What a guest's output may cost the process that writes its log (the agent): at most
 * `bytesPerSecond` on average, after a burst of `burstBytes`. A guest that writes without pause
 * had the agent write its log as fast as the agent could read it, over 100 MiB/s, on 72-74% of a
 * core (a `process` guest granted 0.2 cores, 2026-12-05): its logging was charged to the agent, the
 * one process every other guest's control plane runs in, and to the disk's bandwidth. At the
 * budget the same guest costs the agent 9-10% of a core.
 *
 * A `process` guest over it waits (its host's writes block once its pipe is full: the pump stops
 * reading, host/output-pump.ts), as it waits for an agent that is away; nothing is dropped. A
 * `shared` guest cannot be held alone (its host's thread runs its neighbours too), so what it
 * writes past the budget is dropped and the log says how much (guest/shared.ts; the agent applies
 * the same budget again to what a host sends, host/shared-host.ts).
 */
export const OUTPUT_BUDGET = { bytesPerSecond: 16 * 2 ** 20, burstBytes: 64 * 2 ** 20 } as const;

/** A token bucket of bytes: full (`burst`) at first, refilled at `rate` a second. */
export class ByteBudget {
  private tokens: number;
  private at: number;

  constructor(
    private readonly rate: number = OUTPUT_BUDGET.bytesPerSecond,
    private readonly burst: number = OUTPUT_BUDGET.burstBytes,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.at = now();
  }

  /** Takes `n` bytes, into debt if need be: how many ms until the debt is paid (0: within the budget). */
  take(n: number): number {
    this.refill();
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.rate) * 1000);
  }

  /** Takes `n` bytes if they fit now; false (taking nothing) if not. */
  tryTake(n: number): boolean {
    this.refill();
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** How many ms until `n` bytes fit (0: now). */
  waitFor(n: number): number {
    this.refill();
    return this.tokens >= n ? 0 : Math.ceil(((n - this.tokens) / this.rate) * 1000);
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) / 1000) * this.rate);
    this.at = t;
  }
}

/** The line a log gets in place of a shared guest's output that was over its budget. */
export function droppedNote(bytes: number): string {
  return `[lowcloud: ${bytes} bytes of this guest's output dropped: over its budget of ${OUTPUT_BUDGET.bytesPerSecond / 2 ** 20} MiB a second after ${OUTPUT_BUDGET.burstBytes / 2 ** 20} MiB at once]\n`;
}

/**
 * A shared guest's output passed on within a budget, the rest dropped: a write past the budget (or
 * one `full` refuses) is counted, not kept, and so is every write after it until the budget has
 * room again (~the time of one `room` bytes), when the note of what went is passed on first, on
 * stderr; or as the output ends. Used by the shared host for each guest (guest/shared.ts) and again
 * by the host side for what a host sends (host/shared-host.ts).
 */
export class DroppingOutput {
  private dropped = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pass: (fd: 1 | 2, data: Uint8Array) => void,
    private readonly budget = new ByteBudget(),
    private readonly full: (bytes: number) => boolean = () => false,
    private readonly room = 2 ** 20,
  ) {}

  write(fd: 1 | 2, data: Uint8Array): void {
    if (this.dropped > 0 || this.full(data.length) || !this.budget.tryTake(data.length)) {
      this.dropped += data.length;
      this.timer ??= setTimeout(() => this.note(), this.budget.waitFor(this.room)).unref();
      return;
    }
    this.pass(fd, data);
  }

  /** The output ends (its guest did): what was dropped is said now. */
  end(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.dropped > 0) this.note();
  }

  private note(): void {
    this.timer = null;
    const note = Buffer.from(droppedNote(this.dropped));
    this.dropped = 0;
    this.budget.take(note.length);
    this.pass(2, note);
  }
}
