import type { ProcessStatus } from '@lowcloud/api';
import { cpuSeconds, rssBytes, usageOfAsync, type GuestHandle } from '@lowcloud/sandbox';

export const DISK_INTERVAL_MS = 10_000;

/**
 * How long `status` waits for the guests' own CPU and memory figures. A process guest's are read
 * from /proc at once; a shared guest's come from its host (its linear memory, its CPU between
 * suspensions), which answers between its guests' turns: one busy in a guest that computes answers
 * late, and past this its guests show their host's figures (`level: host`) rather than hold the call.
 */
export const USAGE_WAIT_MS = 250;

/** A running guest's CPU and memory as `status` reports them, and whose they are. */
export type LiveFigures = Pick<NonNullable<ProcessStatus['usage']>, 'cpuSeconds' | 'memoryBytes' | 'level'>;

/** A guest's host process's CPU and memory, from /proc (a `process` guest's own; a shared guest's host's). */
export function hostOf(h: GuestHandle): LiveFigures {
  return { cpuSeconds: cpuSeconds(h.pid) ?? 0, memoryBytes: rssBytes(h.pid) ?? 0, level: { memory: 'host', cpu: 'host' } };
}

/**
 * How long one measurement of the guests' figures serves `status` calls: any number of calls in
 * this time ask the hosts once, so a caller that repeats `status` (a read key may) cannot make the
 * agent flood a shared host, whose one thread runs its guests, with a round of asks per call.
 */
export const LIVE_REUSE_MS = 500;

/**
 * The figures of running guests, by name, all asked at once (a shared host gets its guests' asks in
 * one write): each guest's own where its handle answers within `waitMs`, else its host process's
 * from /proc. Never rejects.
 */
export async function liveFigures(handles: Map<string, GuestHandle>, waitMs = USAGE_WAIT_MS): Promise<Map<string, LiveFigures>> {
  const out = new Map<string, LiveFigures>();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((r) => (timer = setTimeout(r, waitMs)));
  await Promise.race([
    Promise.all(
      [...handles].map(async ([name, h]) => {
        try {
          const u = await h.usage();
          out.set(name, { cpuSeconds: u.cpuSeconds, memoryBytes: u.memoryBytes, level: u.level ?? { memory: 'host', cpu: 'host' } });
        } catch {
          out.set(name, hostOf(h));
        }
      }),
    ),
    late,
  ]);
  clearTimeout(timer);
  // Those not answered in time: their host's figures, read now (one read of a host its guests share).
  const read = new Map<number, LiveFigures>();
  for (const [name, h] of handles) {
    if (out.has(name)) continue;
    let f = read.get(h.pid);
    if (f === undefined) read.set(h.pid, (f = hostOf(h)));
    out.set(name, f);
  }
  return out;
}

/**
 * The usage `status` reports, answered in O(processes) from what is known: CPU and memory as
 * `liveFigures` measured them at the call, disk use from the last background measurement, with its time. One
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

  /**
   * Usage of a running guest (`hasDisk`: it has a writable directory to measure); `disk` fields say
   * when the figure was measured (null: not yet).
   */
  of(name: string, live: LiveFigures, hasDisk: boolean): NonNullable<ProcessStatus['usage']> {
    const d = this.disk.get(name);
    // A guest without a figure yet (just started) gets measured now rather than at the next round.
    if (d === undefined && hasDisk) this.schedule(0);
    return {
      ...live,
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
