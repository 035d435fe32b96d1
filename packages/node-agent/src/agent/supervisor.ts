import type { AgentEvent, ProcessSpec, ProcessState } from '@lowcloud/api';
import type { GuestExit, GuestHandle } from '@lowcloud/sandbox';
import type { Clock } from './clock.js';

export interface BackoffPolicy {
  /** First restart delay; doubles per consecutive failure. */
  baseMs: number;
  maxMs: number;
  /** Running this long resets the failure count. */
  resetAfterMs: number;
  /** Consecutive failures after which the state shows `crash-loop`. */
  crashLoopAfter: number;
}

/** kubelet's schedule: 10 s doubling to 5 min, reset after 10 min of running. */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000, crashLoopAfter: 3 };

export function backoffDelay(failures: number, p: BackoffPolicy): number {
  return Math.min(p.baseMs * 2 ** Math.max(0, failures - 1), p.maxMs);
}

/** Starts guests for the supervisor; production: the sandbox; the unit tests: real objects in memory. */
export interface GuestRunner {
  spawn(spec: ProcessSpec, specDigest: string): Promise<GuestHandle>;
  /**
   * Replace a running guest's spec (new config) in place, without a new guest host where the
   * sandbox can (`GuestHandle.restart`): the new guest's handle, or null where it cannot (then the
   * supervisor stops and starts).
   */
  restart?(handle: GuestHandle, spec: ProcessSpec, specDigest: string): Promise<GuestHandle> | null;
}

export interface SupervisorDeps {
  runner: GuestRunner;
  clock: Clock;
  backoff: BackoffPolicy;
  emit(e: AgentEvent): void;
  /** Persist the restart count (so it survives an agent restart). */
  saveRestarts(name: string, n: number): void;
}

/**
 * Keeps one process in its desired state: starts it, restarts it by its policy with exponential
 * backoff, shows a crash loop, and stops it gracefully.
 */
export class ProcessSupervisor {
  state: ProcessState = 'starting';
  handle: GuestHandle | null = null;
  lastExit: GuestExit | null = null;
  nextRestartAt: number | null = null;
  private failures = 0;
  private startedAt = 0;
  private timer: { cancel(): void } | null = null;
  private stopping = false;

  constructor(
    readonly name: string,
    public spec: ProcessSpec,
    public specDigest: string,
    private readonly deps: SupervisorDeps,
    public restarts = 0,
  ) {}

  async start(): Promise<void> {
    this.stopping = false;
    this.state = 'starting';
    const handle = await this.deps.runner.spawn(this.spec, this.specDigest);
    this.watch(handle);
    this.deps.emit({ kind: 'started', process: this.name, at: new Date(this.deps.clock.now()).toISOString(), pid: handle.pid });
  }

  /** Take over a guest that kept running while the agent was down: same pid, no restart. */
  adopt(handle: GuestHandle): void {
    this.watch(handle);
  }

  /** Record an exit that happened while the agent was down, and act on it by the policy. */
  adoptExited(exit: GuestExit): void {
    this.onExit(exit);
  }

  private watch(handle: GuestHandle): void {
    this.handle = handle;
    this.state = 'running';
    this.startedAt = this.deps.clock.now();
    void handle.exited.then((exit) => {
      if (this.handle === handle) this.onExit(exit);
    });
  }

  private onExit(exit: GuestExit): void {
    this.handle = null;
    this.lastExit = exit;
    const at = new Date(this.deps.clock.now()).toISOString();
    if (this.stopping || exit.kind === 'stopped') {
      this.state = 'stopped';
      return;
    }
    const failed = !(exit.kind === 'exit' && exit.code === 0);
    if (exit.kind === 'violation') this.deps.emit({ kind: 'grant-violated', process: this.name, at, grant: exit.grant, detail: exit.detail });
    this.deps.emit({ kind: failed ? 'died' : 'exited', process: this.name, at, detail: JSON.stringify(exit) });
    const restart = this.spec.restart === 'always' || (this.spec.restart === 'on-failure' && failed);
    if (!restart) {
      this.state = 'exited';
      return;
    }
    if (this.deps.clock.now() - this.startedAt >= this.deps.backoff.resetAfterMs) this.failures = 0;
    this.failures++;
    const delay = backoffDelay(this.failures, this.deps.backoff);
    this.state = this.failures >= this.deps.backoff.crashLoopAfter ? 'crash-loop' : 'backoff';
    if (this.state === 'crash-loop') this.deps.emit({ kind: 'crash-loop', process: this.name, at, detail: `${this.failures} failures in a row; next try in ${delay} ms` });
    this.nextRestartAt = this.deps.clock.now() + delay;
    this.timer = this.deps.clock.setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    this.timer = null;
    this.nextRestartAt = null;
    if (this.stopping) return;
    this.restarts++;
    this.deps.saveRestarts(this.name, this.restarts);
    try {
      await this.start();
      this.deps.emit({ kind: 'restarted', process: this.name, at: new Date(this.deps.clock.now()).toISOString(), ...(this.handle === null ? {} : { pid: this.handle.pid }) });
    } catch (err) {
      this.onExit({ kind: 'trap', message: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Graceful stop: the guest host gets SIGTERM, then SIGKILL after the grace period. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.timer?.cancel();
    this.timer = null;
    this.nextRestartAt = null;
    const h = this.handle;
    if (h !== null) await h.stop(graceMs);
    this.state = 'stopped';
    this.deps.emit({ kind: 'stopped', process: this.name, at: new Date(this.deps.clock.now()).toISOString() });
  }

  /** Replace the spec (new config) and restart exactly once: in place where the sandbox can. */
  async replace(spec: ProcessSpec, specDigest: string, graceMs: number): Promise<void> {
    const h = this.handle;
    // The old guest's end is not an exit of the process: it is unwatched before it is asked.
    this.handle = null;
    const inPlace = h === null ? null : (this.deps.runner.restart?.(h, spec, specDigest) ?? null);
    if (inPlace !== null && h !== null) {
      this.state = 'starting';
      this.timer?.cancel();
      this.timer = null;
      this.nextRestartAt = null;
      let next: GuestHandle;
      try {
        next = await inPlace;
      } catch (err) {
        await h.stop(graceMs).catch(() => undefined); // whatever is left of it: the caller starts the old spec again
        this.state = 'stopped';
        throw err;
      }
      this.spec = spec;
      this.specDigest = specDigest;
      this.failures = 0;
      this.restarts++;
      this.deps.saveRestarts(this.name, this.restarts);
      this.stopping = false;
      this.watch(next);
      // The same story as a stop and a start (its guest did stop), in the same host.
      const at = new Date(this.deps.clock.now()).toISOString();
      this.deps.emit({ kind: 'stopped', process: this.name, at });
      this.deps.emit({ kind: 'started', process: this.name, at, pid: next.pid });
      return;
    }
    this.handle = h;
    await this.stop(graceMs);
    this.spec = spec;
    this.specDigest = specDigest;
    this.failures = 0;
    this.restarts++;
    this.deps.saveRestarts(this.name, this.restarts);
    await this.start();
  }
}
