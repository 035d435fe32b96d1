import { describe, expect, it } from 'vitest';
import type { AgentEvent, ProcessSpec } from '@lowcloud/api';
import type { GuestExit, GuestHandle } from '@lowcloud/sandbox';
import type { Clock } from './clock.js';
import { backoffDelay, DEFAULT_BACKOFF, ProcessSupervisor, type GuestRunner } from './supervisor.js';

/** A clock that moves only when told, running due timers in order. */
class FakeClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }
  /** Advance to the next timer and run it; returns the delay it had. */
  async next(): Promise<number> {
    const due = this.timers.filter((x) => x.live).sort((a, b) => a.at - b.at)[0];
    if (due === undefined) throw new Error('no timer scheduled');
    const waited = due.at - this.t;
    this.t = due.at;
    due.live = false;
    due.fn();
    await settle();
    return waited;
  }
  pending(): number {
    return this.timers.filter((x) => x.live).length;
  }
}

/** A guest that exits as the test says, after `runMs` of fake time. */
class ScriptedRunner implements GuestRunner {
  spawned = 0;
  constructor(
    private readonly clock: FakeClock,
    private readonly exit: () => GuestExit,
    private readonly runMs = 0,
  ) {}
  async spawn(): Promise<GuestHandle> {
    this.spawned++;
    const exit = this.exit();
    // The guest "runs" for runMs of fake time, then exits.
    const exited = new Promise<GuestExit>((resolve) =>
      setImmediate(() => {
        this.clock.t += this.runMs;
        resolve(exit);
      }),
    );
    return { pid: 1000 + this.spawned, host: 'h', report: { memory: [], cpu: [], disk: [], network: [], isolation: [] }, exited, usage: async () => ({ cpuSeconds: 0, memoryBytes: 0, diskBytes: 0 }), stop: async () => exit, detach: () => undefined };
  }
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const spec = (restart: ProcessSpec['restart']): ProcessSpec => ({ name: 'p', binary: 'a'.repeat(64), args: [], env: {}, config: {}, grants: { network: { listen: [], connect: [] } }, restart });

function setup(restart: ProcessSpec['restart'], exit: () => GuestExit, runMs = 0) {
  const clock = new FakeClock();
  const runner = new ScriptedRunner(clock, exit, runMs);
  const events: AgentEvent[] = [];
  const sup = new ProcessSupervisor('p', spec(restart), 'd', { runner, clock, backoff: DEFAULT_BACKOFF, emit: (e) => events.push(e), saveRestarts: () => undefined });
  return { clock, runner, events, sup };
}

describe('restart backoff', () => {
  it('is 10 s doubling to 5 min', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, DEFAULT_BACKOFF) / 1000)).toEqual([10, 20, 40, 80, 160, 300, 300, 300]);
  });

  it('a guest that exits at once is restarted on that schedule and shows a crash loop', async () => {
    const { clock, runner, events, sup } = setup('always', () => ({ kind: 'exit', code: 1 }));
    await sup.start();
    await settle();
    const waits: number[] = [];
    const states: string[] = [sup.state];
    for (let i = 0; i < 7; i++) {
      waits.push(await clock.next());
      await settle();
      states.push(sup.state);
    }
    expect(waits.map((w) => w / 1000)).toEqual([10, 20, 40, 80, 160, 300, 300]);
    expect(states).toEqual(['backoff', 'backoff', 'crash-loop', 'crash-loop', 'crash-loop', 'crash-loop', 'crash-loop', 'crash-loop']);
    expect(sup.restarts).toBe(7);
    expect(runner.spawned).toBe(8);
    expect(events.filter((e) => e.kind === 'crash-loop').length).toBeGreaterThan(0);
  });

  it('running 10 minutes resets the count', async () => {
    const { clock, sup } = setup('always', () => ({ kind: 'exit', code: 1 }), 11 * 60_000);
    await sup.start();
    await settle();
    expect(await clock.next()).toBe(10_000);
    await settle();
    expect(await clock.next()).toBe(10_000);
  });

  it('on-failure does not restart a clean exit; never does not restart at all', async () => {
    const clean = setup('on-failure', () => ({ kind: 'exit', code: 0 }));
    await clean.sup.start();
    await settle();
    expect(clean.sup.state).toBe('exited');
    expect(clean.clock.pending()).toBe(0);
    const never = setup('never', () => ({ kind: 'trap', message: 'boom' }));
    await never.sup.start();
    await settle();
    expect(never.sup.state).toBe('exited');
    expect(never.events.map((e) => e.kind)).toEqual(['started', 'died']);
  });

  // The supervisor's half only: a violation exit becomes grant-violated + died. That a real guest past
  // its grant is killed and reported so (cgroup OOM kill and RSS watchdog) is test/agent/memory-violation.test.ts.
  it('maps a violation exit to grant-violated before died (not a plain crash)', async () => {
    const v = setup('never', () => ({ kind: 'violation', grant: 'memory', detail: 'past 64MiB' }));
    await v.sup.start();
    await settle();
    expect(v.events.map((e) => e.kind)).toEqual(['started', 'grant-violated', 'died']);
  });
});

/** Guests that run until stopped; with `inPlace`, their handles replace their config in place (a shared host's). */
class LongRunner implements GuestRunner {
  spawned = 0;
  restarted = 0;
  constructor(private readonly inPlace: boolean) {}
  private handle(pid: number): GuestHandle {
    let end: (e: GuestExit) => void = () => undefined;
    const exited = new Promise<GuestExit>((r) => (end = r));
    const stop = async () => {
      end({ kind: 'stopped' });
      return { kind: 'stopped' } as const;
    };
    const h: GuestHandle = { pid, host: 'shared-1', report: { memory: [], cpu: [], disk: [], network: [], isolation: [] }, exited, usage: async () => ({ cpuSeconds: 0, memoryBytes: 0, diskBytes: 0 }), stop, detach: () => undefined };
    if (!this.inPlace) return h;
    return {
      ...h,
      restart: async () => {
        this.restarted++;
        // The old guest ends as the new one starts, in the same host.
        end({ kind: 'stopped' });
        return this.handle(pid);
      },
    };
  }
  async spawn(): Promise<GuestHandle> {
    this.spawned++;
    return this.handle(1000 + this.spawned);
  }
  restart(handle: GuestHandle): Promise<GuestHandle> | null {
    return handle.restart?.({ wasm: '', args: [], env: {}, dirs: [], config: [], grants: { network: { listen: [], connect: [] } } }) ?? null;
  }
}

describe('replace (replace-config)', () => {
  const make = (inPlace: boolean) => {
    const runner = new LongRunner(inPlace);
    const events: AgentEvent[] = [];
    const sup = new ProcessSupervisor('p', spec('always'), 'd', { runner, clock: new FakeClock(), backoff: DEFAULT_BACKOFF, emit: (e) => events.push(e), saveRestarts: () => undefined });
    return { runner, events, sup };
  };

  it('in place where the handle can: no new guest host, the old guest\'s end is not an exit, one restart counted', async () => {
    const { runner, events, sup } = make(true);
    await sup.start();
    await sup.replace({ ...spec('always'), config: { '/etc/c': 'b'.repeat(64) } }, 'd2', 1000);
    await settle();
    expect([runner.spawned, runner.restarted, sup.restarts, sup.state, sup.specDigest, sup.handle?.pid]).toEqual([1, 1, 1, 'running', 'd2', 1001]);
    // Told as a stop and a start, as when it is not in place (no `died`: the old guest's end is no exit).
    expect(events.map((e) => e.kind)).toEqual(['started', 'stopped', 'started']);
  });

  it('otherwise stopped and started again', async () => {
    const { runner, events, sup } = make(false);
    await sup.start();
    await sup.replace({ ...spec('always'), config: { '/etc/c': 'b'.repeat(64) } }, 'd2', 1000);
    await settle();
    expect([runner.spawned, runner.restarted, sup.restarts, sup.state, sup.handle?.pid]).toEqual([2, 0, 1, 'running', 1002]);
    expect(events.map((e) => e.kind)).toEqual(['started', 'stopped', 'started']);
  });
});
