import type { ProcessStatus } from '@lowcloud/api';
import { cpuSeconds, rssBytes, usageOfAsync } from '@lowcloud/sandbox';

export const DISK_INTERVAL_MS = 10_000;

/**
 * The usage `status` reports, answered in O(processes) from what is known: CPU and memory are read
 * from /proc at the call (cheap), disk use from the last background measurement, with its time. One
 * measurement round walks the guests' data directories one after another, every `intervalMs`,
 * asynchronously, by the disk grant's own rule (`usageOfAsync`: 4 KiB per entry plus each distinct
 * file's bytes once), so `status` shows what the grant is charged.
 */
export class UsageMonitor {
  private readonly disk = new Map<string, { bytes: number; at: number }>();
  private measuring: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<void> | null = null;
  private stopped = false;

  constructor(
    /** Process name -> its writable directory, for every running guest that has one. */
    private readonly targets: () => Map<string, string>,
    private readonly intervalMs = DISK_INTERVAL_MS,
  ) {}

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }

  /** Usage of a running guest; `disk` fields say when the figure was measured (null: not yet). */
  of(name: string, pid: number): NonNullable<ProcessStatus['usage']> {
    const d = this.disk.get(name);
    // A guest without a figure yet (just started) gets measured now rather than at the next round.
    if (d === undefined && this.targets().has(name)) this.schedule(0);
    return {
      cpuSeconds: cpuSeconds(pid) ?? 0,
      memoryBytes: rssBytes(pid) ?? 0,
      diskBytes: d?.bytes ?? 0,
      diskMeasuredAt: d === undefined ? null : new Date(d.at).toISOString(),
      diskMeasuring: this.measuring === name,
    };
  }

  private schedule(delay: number): void {
    if (this.stopped || this.round !== null) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.round = this.measureAll().then(
        () => {
          this.round = null;
          // A guest that started during the round is measured at once, not a whole interval later.
          const missing = [...this.targets().keys()].some((n) => !this.disk.has(n));
          this.schedule(missing ? 0 : this.intervalMs);
        },
        (err: unknown) => {
          this.round = null;
          process.stderr.write(`disk usage: ${err instanceof Error ? err.message : String(err)}\n`);
          this.schedule(this.intervalMs);
        },
      );
    }, delay);
    this.timer.unref();
  }

  private async measureAll(): Promise<void> {
    const targets = this.targets();
    for (const name of this.disk.keys()) if (!targets.has(name)) this.disk.delete(name);
    for (const [name, dir] of targets) {
      if (this.stopped) return;
      this.measuring = name;
      try {
        this.disk.set(name, { bytes: await usageOfAsync(dir), at: Date.now() });
      } finally {
        this.measuring = null;
      }
    }
  }
}
