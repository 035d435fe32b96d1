import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ProcessStatus } from '@lowcloud/api';
import { cpuSeconds, rssBytes } from '@lowcloud/sandbox';

/** lstat calls in flight at once during a walk: the walk never holds the whole thread pool. */
const LSTAT_BATCH = 32;
export const DISK_INTERVAL_MS = 10_000;

/**
 * Bytes under `dir` (apparent sizes of regular files), never following symlinks (a link to / must
 * not count /). Asynchronous and in small batches: the event loop keeps serving calls while a guest
 * with 50,000 files is walked.
 */
export async function measureDisk(dir: string): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop() as string;
    let entries;
    try {
      entries = await fsp.opendir(d, { bufferSize: LSTAT_BATCH });
    } catch {
      continue; // removed while walking, or not a directory: nothing to count there
    }
    let batch: string[] = [];
    try {
      for await (const e of entries) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) stack.push(p);
        else if (e.isFile()) batch.push(p);
        if (batch.length >= LSTAT_BATCH) {
          total += await sizes(batch);
          batch = [];
        }
      }
    } catch {
      // The directory went away mid-listing (the guest removed it): count what was seen.
    }
    total += await sizes(batch);
  }
  return total;
}

async function sizes(files: string[]): Promise<number> {
  // A file removed between the listing and its lstat counts 0.
  const s = await Promise.all(files.map((f) => fsp.lstat(f).then((st) => st.size, () => 0)));
  return s.reduce((a, b) => a + b, 0);
}

/**
 * The usage `status` reports, answered in O(processes) from what is known: CPU and memory are read
 * from /proc at the call (cheap), disk use from the last background measurement, with its time. One
 * measurement round walks the guests' data directories one after another, every `intervalMs`.
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
        this.disk.set(name, { bytes: await measureDisk(dir), at: Date.now() });
      } finally {
        this.measuring = null;
      }
    }
  }
}
