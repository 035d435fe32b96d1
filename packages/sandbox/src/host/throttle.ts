import { processTree, treeCpuSeconds } from './proc.js';

/**
 * The runtime layer of the CPU grant, for machines without cgroups: an adaptive SIGSTOP/SIGCONT
 * duty cycle. Every tick it compares the CPU the process used with what the grant allows and
 * pauses it while it is over. Credit for idle time is capped, so a guest cannot bank idle seconds
 * and then burst far past its grant. It acts on every process of the guest host (its descendants,
 * refreshed every 250 ms): a child process shares the grant and is stopped with it.
 */
/** Throttles running in this process: resumed if it exits while one holds its guest stopped. */
const active = new Set<CpuThrottle>();
let exitHook = false;

export class CpuThrottle {
  private timer: NodeJS.Timeout | null = null;
  private last: number | null = null;
  private lastAt = 0;
  private credit = 0;
  private stopped = false;
  private tree: number[];
  private treeAt = 0;

  constructor(
    private readonly pid: number,
    private readonly cores: number,
    private readonly tickMs = 20,
    private readonly maxBurstSeconds = 0.05,
  ) {
    this.tree = [pid];
  }

  /** The guest host and its descendants, listed again at most every 250 ms. */
  private processes(): number[] {
    const now = performance.now();
    if (now - this.treeAt >= 250) {
      this.tree = processTree(this.pid);
      this.treeAt = now;
    }
    return this.tree;
  }

  private signal(sig: 'SIGSTOP' | 'SIGCONT'): boolean {
    let root = true;
    for (const [i, p] of this.processes().entries()) {
      try {
        process.kill(p, sig);
      } catch {
        if (i === 0) root = false; // the guest host is gone; a child may have ended meanwhile
      }
    }
    return root;
  }

  start(): this {
    active.add(this);
    if (!exitHook) {
      exitHook = true;
      // A normal exit, process.exit() or an uncaught error: never leave a guest SIGSTOPped. (A
      // SIGKILLed owner cannot run this; the re-attaching host sends SIGCONT first thing.)
      process.on('exit', () => {
        for (const t of active) t.stop();
      });
    }
    this.last = treeCpuSeconds(this.processes());
    this.lastAt = performance.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    return this;
  }

  private tick(): void {
    const used = treeCpuSeconds(this.processes());
    if (used === null || this.last === null) return this.stop();
    const now = performance.now();
    this.credit = Math.min(this.credit + (this.cores * (now - this.lastAt)) / 1000 - (used - this.last), this.maxBurstSeconds);
    this.last = used;
    this.lastAt = now;
    const over = this.credit < 0;
    if (over !== this.stopped) {
      if (this.signal(over ? 'SIGSTOP' : 'SIGCONT')) this.stopped = over;
      else this.stop();
    } else if (over) this.signal('SIGSTOP'); // a child born since the last tick
  }

  /** Stop throttling and leave the process running. */
  stop(): void {
    active.delete(this);
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.stopped) {
      this.treeAt = 0;
      this.signal('SIGCONT');
      this.stopped = false;
    }
  }
}
