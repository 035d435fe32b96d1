import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { NetworkAccess } from '@lowcloud/api';
import { writeFileAtomic } from '../common/durable-file.js';
import { decodeLine, GUEST_HOST_FD, Lines, type HostBoot } from '../common/protocol.js';
import { GrantUnavailableError, GuestStartError } from '../errors.js';
import type { GuestExit, GuestOptions, OutputTarget } from '../types.js';
import type { BinaryKind } from '../wasm/module.js';
import { probeCapabilitiesSync } from './capabilities.js';
import { cgroupOomKilled, GuestCgroup, killLeftIn, removeCgroupDir, type CgroupLimits } from './cgroup.js';
import { classifyExit } from './exit.js';
import { stopVethRedirects } from './firewall.js';
import { VETH_INTERFACE, type NetnsMode } from './netns.js';
import { LAYER_MODULES, type GrantLayers } from './grants/index.js';
import type { Guest, GuestRecord } from './guest.js';
import { codeView, wallCommand, type WallLimits, type Wall, type WallSpec } from './isolation.js';
import { launcherArgs } from './launcher.js';
import { OutputPump, type OutputRecord } from './output-pump.js';
import { JsonDocuments, parseGuestHostMessage } from './messages.js';
import { cpuSeconds, rssBytes, startTime } from './proc.js';
import { seccompProgram } from './seccomp.js';
import { journalOf, sharedGuestRecord } from './shared-journal.js';
import { sleepSync } from '../common/sleep.js';

/** Written by the launcher when the kernel OOM-killed the guest host's cgroup (run directory). */
const OOM_FILE = 'oom-killed';

export interface HostTuning {
  /** Force the runtime layer of the grants even where cgroups are available (tests, and `--no-kernel`). */
  kernel?: boolean;
  /** Run the guest host without the kernel wall (tests of the JS layer alone). */
  wall?: boolean;
  /** Refuse to start a guest the wall cannot be built around (GRANT_UNAVAILABLE) instead of running it unwalled. */
  requireWall?: boolean;
  /**
   * The network namespace of a network-granted guest host: its own reached over a veth pair
   * (default), or through pasta, or the host's (`lowcloud agent --netns`: grants/isolation.ts).
   */
  netns?: NetnsMode;
}

export type { NetnsMode } from './netns.js';

/** What a re-attaching host needs (runDir/guest.json; a shared host's journal, shared-journal.ts). */
export interface GuestHostRecord {
  /** The host's id (absent in records from before shared hosts: then its first guest's id). */
  id?: string;
  /** A shared guest host's control FIFOs (common/protocol.ts SHARED_CTL). */
  ctl?: string;
  /** A process guest host's control FIFOs, for a restart in place (guest/main.ts `--ctl`). */
  processCtl?: string;
  pid: number;
  start: string | null;
  /** Every cgroup directory the launcher put the guest host in (v1 and v2). */
  cgroups: string[];
  /** Each layer's own record, by module name (grants/*.ts). */
  layers: Record<string, object | null>;
  guests: GuestRecord[];
  /** Its output FIFOs and the log files they go to (host/output-pump.ts), read again on re-attach. */
  outputs?: OutputRecord[];
  /** The launcher (its parent outside the wall), which writes the exit record after it: waited for too. */
  launcher?: { pid: number; start: string | null };
  /** The host interface of its veth namespace (host/netns.ts): a stop removes its redirects first. */
  veth?: string;
}

/** How a guest host process ended. */
export interface HostEnd {
  violation: GuestExit | null;
  status: { code: number | null; signal: NodeJS.Signals | null; wrapped: boolean } | null;
}

/** Compiled guest host entry: always the built dist/ file, also when this module runs from src/. */
function guestMain(entry = 'main.js'): string {
  const here = fileURLToPath(import.meta.url);
  const dist = here.replace(`${path.sep}src${path.sep}`, `${path.sep}dist${path.sep}`).replace(/\.ts$/, '.js');
  return path.join(path.dirname(dist), '..', 'guest', entry);
}

/**
 * The grants' layers around a guest host that is not started yet: every kernel object made
 * (cgroup, firewall table, disk images) before any guest code runs. `launch` starts the process in
 * them; `release` undoes them when it never starts.
 */
export class PreparedHost {
  private constructor(
    readonly name: string,
    readonly layers: readonly GrantLayers[],
    private readonly cgroup: GuestCgroup | null,
  ) {}

  /** Each module's set-up, in order; a cgroup the kernel refuses means the guest does not run. */
  static async create(opts: GuestOptions, binary: { kind: BinaryKind; network: NetworkAccess }, tuning: HostTuning): Promise<PreparedHost> {
    const caps = probeCapabilitiesSync();
    const kernel = tuning.kernel !== false && caps.root;
    const name = `g-${Date.now()}-${randomBytes(4).toString('hex')}`;
    const asks = LAYER_MODULES.map((m) => ({ name: m.name, limits: m.cgroupLimits?.(opts) ?? {} })).filter((a) => Object.keys(a.limits).length > 0);
    let cgroup: GuestCgroup | null = null;
    if (kernel && caps.cgroup !== null && asks.length > 0) {
      try {
        cgroup = GuestCgroup.create(caps.cgroup, name, Object.assign({}, ...asks.map((a) => a.limits)) as CgroupLimits, caps.controllers);
      } catch (err) {
        throw new GrantUnavailableError(asks[0]?.name ?? 'memory', `${err instanceof Error ? err.message : String(err)}; the guest was not started`);
      }
    }
    const layers: GrantLayers[] = [];
    const prepared = new PreparedHost(name, layers, cgroup);
    try {
      for (const m of LAYER_MODULES) layers.push(await m.setUp({ options: opts, kind: binary.kind, network: binary.network, kernel, wall: tuning.wall !== false, requireWall: tuning.requireWall === true, netns: tuning.netns ?? 'veth', caps, name, cgroup }));
    } catch (err) {
      await prepared.release();
      throw err;
    }
    return prepared;
  }

  /** The layers' names, in the order of `layers` (the enforcement report's keys). */
  get names(): string[] {
    return LAYER_MODULES.map((m) => m.name);
  }

  get wall(): { wall: Wall | null; uid: number; devices: string[]; network?: WallSpec['network']; limits?: WallLimits; userland?: boolean } {
    return this.layers.find((l) => l.wall !== undefined)?.wall ?? { wall: null, uid: process.getuid?.() ?? 0, devices: [] };
  }

  /** Its own cgroup (the grants' kernel limits), or null where none was made. */
  get kernelCgroup(): GuestCgroup | null {
    return this.cgroup;
  }

  get cgroupDirs(): string[] {
    return [...new Set([...(this.cgroup?.all ?? []), ...this.layers.flatMap((l) => l.cgroupDirs ?? [])])];
  }

  get oomKilled(): boolean {
    return this.cgroup?.oomKilled() === true;
  }

  /** Remove every kernel object; `launcherCleaned`: the launcher removed what it could as it ended. */
  async release(launcherCleaned = false): Promise<void> {
    for (const l of this.layers) await l.release?.(launcherCleaned);
    this.cgroup?.remove();
  }

  /**
   * Start the guest host for `guests`: the launcher (root, kernel objects) joins the cgroups and
   * execs the wall, which execs Node.js; the boot options go down a pipe; the pid comes back on the
   * report pipe. Throws GuestStartError (having stopped it) when it does not start confined.
   */
  async launch(
    guests: Guest[],
    how: { detached: boolean; runDir: string | null; hostHeapMb: number; stdin: boolean; stdout: OutputTarget; stderr: OutputTarget; shared?: { node: string; ctl: string | null }; ctl?: string },
  ): Promise<GuestHost> {
    const { wall, uid, devices, network, limits, userland } = this.wall;
    const dirs = this.cgroupDirs;
    const table = this.layers.find((l) => l.table !== undefined)?.table ?? null;
    // A shared guest host (guest/shared.ts) may run on another Node.js (one with JSPI): its directory is bound too.
    // A process guest host with control FIFOs (`how.ctl`) can start its guest again in place (guest/main.ts).
    const ctl = how.shared?.ctl ?? how.ctl ?? null;
    // Where the launcher records an OOM kill, for a host side that re-attaches: the run directory,
    // or beside a shared host's control FIFOs (in the agent's `.shared-hosts`, outside the wall).
    const oomFile = how.runDir !== null ? path.join(how.runDir, OOM_FILE) : how.shared !== undefined && how.shared.ctl !== null ? sharedOomFile(how.shared.ctl) : null;
    if (oomFile !== null) fs.rmSync(oomFile, { force: true }); // a previous run's
    const node = how.shared === undefined ? [process.execPath, `--max-old-space-size=${how.hostHeapMb}`, guestMain(), ...(ctl === null ? [] : ['--ctl', ctl])] : [how.shared.node, `--max-old-space-size=${how.hostHeapMb}`, guestMain('shared.js'), ...(how.detached ? ['--detached'] : []), ...(how.shared.ctl === null ? [] : ['--ctl', how.shared.ctl])];
    const nodeDir = how.shared === undefined || how.shared.node === process.execPath ? [] : [path.dirname(path.dirname(fs.realpathSync(how.shared.node)))];
    const command =
      wall === null
        ? node
        : wallCommand(wall, { uid: wall.mode === 'root' ? uid : null, ro: [...codeView(), ...nodeDir, ...(ctl === null ? [] : [ctl]), ...guests.flatMap((g) => g.readable)], rw: guests.flatMap((g) => g.writable), devices, network: network ?? false, userland: userland === true, ...(limits === undefined ? {} : { limits }), seccompFd: GUEST_HOST_FD.seccomp, infoFd: GUEST_HOST_FD.report, dieWithParent: !how.detached, command: node });
    // A process guest host with a run directory sends its output and exit record down pipes to
    // this side and its launcher (host/output-pump.ts), so the launcher always runs for it.
    const pipes = how.runDir !== null && how.shared === undefined ? await OutputPump.prepare(how.runDir, { 1: how.stdout, 2: how.stderr }) : null;
    const launcher = dirs.length > 0 || table !== null || pipes !== null;
    const exitFile = pipes === null || how.runDir === null ? null : path.join(how.runDir, 'exit.json');
    const [file, ...args] = launcher ? ['/bin/sh', ...launcherArgs(dirs, table, wall === null, oomFile, exitFile, pipes?.pump.drainFds ?? [], command)] : command;
    const reports = launcher || wall !== null;
    const output = (t: OutputTarget, n: 1 | 2) => pipes?.fds[n] ?? (t === 'pipe' || typeof t === 'object' ? 'pipe' : t === 'inherit' && !how.detached ? 'inherit' : 'ignore');
    let child: ChildProcess;
    try {
      child = spawn(file as string, args, {
        // A shared guest host always has its channel: guests come and go over it, also when detached.
        stdio: [how.stdin && !how.detached ? 'inherit' : 'ignore', output(how.stdout, 1), output(how.stderr, 2), how.detached && how.shared === undefined ? 'ignore' : 'pipe', reports ? 'pipe' : 'ignore', wall !== null ? 'pipe' : 'ignore', 'pipe', pipes?.fds.exit ?? 'ignore'],
        detached: how.detached,
        // The guest gets its environment from the grant only; the host process gets nothing either.
        env: {},
      });
    } finally {
      // The child holds the write ends now; this side only reads.
      pipes?.closeWriters();
    }
    // What goes to log files is written here, outside the wall (a shared host sends it over its channel).
    const pump =
      pipes !== null ? pipes.pump : how.shared === undefined ? OutputPump.forPipes({ 1: how.stdout, 2: how.stderr }, { 1: typeof how.stdout === 'object' ? child.stdout : null, 2: typeof how.stderr === 'object' ? child.stderr : null }) : null;
    pump?.start();
    const boot: HostBoot = { type: 'boot', detached: how.detached, guests: guests.map((g) => g.boot).filter((b) => b !== null) };
    const host = new GuestHost(this.name, this, child, guests, how.runDir, launcher);
    host.pump = pump;
    if (how.shared === undefined && ctl !== null) host.processCtl = ctl;
    if (pipes !== null) host.outputs = pipes.pump.records;
    // A guest host that failed to start closes its ends early; its failure is reported on the report pipe.
    const fds = child.stdio as unknown as (Writable | null)[];
    writeAll(fds[GUEST_HOST_FD.boot], how.shared === undefined ? JSON.stringify(boot) : '');
    if (wall !== null) writeAll(fds[GUEST_HOST_FD.seccomp], seccompProgram());
    // Listened to from the start: a guest host can end before its pid is known.
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      try {
        await host.started(reports);
      } catch (err) {
        throw new GuestStartError(err instanceof Error ? err.message : String(err), err);
      }
      if (how.runDir !== null) host.save(path.join(how.runDir, 'guest.json'), this.layers);
    } catch (err) {
      // Ended before its kernel objects go (the caller releases them): a cgroup with a process in
      // it cannot be removed, and would wait for a sweep.
      if (host.pid > 0) signal(host.pid, 'SIGKILL');
      child.kill('SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
      throw err;
    }
    return host;
  }
}

function writeAll(pipe: Writable | null | undefined, data: string | Buffer): void {
  pipe?.on('error', () => undefined);
  pipe?.end(data);
}

/**
 * A guest host: the process (launcher, wall, cgroups, firewall table, pid) that runs guests, one
 * per host today. It knows how the process ended; each guest's exit is classified from that and
 * from what the guest host reported for it (exit.ts).
 */
export class GuestHost {
  pid = -1;
  private start: string | null = null;
  private stopRequested = false;
  private readonly reported = new Map<string, GuestExit>();
  private violated: GuestExit | null = null;
  private oomReported = false;
  private ended: Promise<HostEnd> = new Promise(() => undefined);
  private layers: readonly GrantLayers[] = [];

  /** The grants' layers around the process (a shared host records them in each guest's run directory). */
  get layerList(): readonly GrantLayers[] {
    return this.layers;
  }

  /** A shared guest host's control FIFOs (set for a launched shared host, or from its record). */
  ctl: string | null = null;
  /** A process guest host's control FIFOs (restart in place), or null. */
  processCtl: string | null = null;
  /** Recorded by the host that started it (a re-attached host has no `prepared`): written again with a new guest. */
  private recordedCgroups: string[] = [];

  /** Writes the guest host's output to its log files, outside the wall (host/output-pump.ts). */
  pump: OutputPump | null = null;
  /** Its output FIFOs, recorded for a re-attaching host. */
  outputs: OutputRecord[] = [];
  /** This side let it go (`detach`): what its launcher left in the pipes is the next side's to log. */
  private detached = false;
  private launcherRecord: { pid: number; start: string | null } | null = null;
  /** Its veth namespace's host interface (as its wall shell reported it), while its table redirects here. */
  private veth: string | null = null;

  constructor(
    /** Names the host (handle.host); a process guest's host has its guest alone. */
    readonly id: string,
    private readonly prepared: PreparedHost | null,
    readonly child: ChildProcess | null,
    readonly guests: Guest[],
    private readonly runDir: string | null,
    private readonly launcher: boolean,
  ) {}

  private channel: Duplex | null = null;
  private readonly listeners: ((m: unknown) => void)[] = [];
  private readonly closeListeners: (() => void)[] = [];

  /**
   * The guest host's channel (fd 3), read as lines with a cap: what comes this way is hostile (code
   * that left the WebAssembly sandbox writes what it likes), so a line that is not JSON or is too
   * long is dropped, and each listener parses what it believes closed.
   */
  private listen(channel: Duplex | null): void {
    if (channel === null) return;
    this.channel = channel;
    channel.on('error', () => undefined);
    channel.once('close', () => this.closeListeners.forEach((f) => f()));
    const lines = new Lines();
    channel.setEncoding('utf8');
    channel.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) {
        let m: unknown;
        try {
          m = decodeLine(line);
        } catch {
          continue;
        }
        for (const f of this.listeners) f(m);
      }
    });
  }

  /** Each message from the guest host on its channel, decoded but not parsed (hostile input). */
  onMessage(f: (m: unknown) => void): void {
    this.listeners.push(f);
  }

  /**
   * Called once its channel closed: the guest host ended (this comes before `whenEnded`, which
   * waits for its layers) or closed it, or `detach`. Nothing said after this reaches either side.
   */
  onChannelClosed(f: () => void): void {
    this.closeListeners.push(f);
  }

  /** Lines to the guest host on its channel; false when there is none or it is closed. */
  sendLines(text: string): boolean {
    if (this.channel === null || this.channel.destroyed || !this.channel.writable) return false;
    this.channel.write(text);
    return true;
  }

  /** Wait for the pid, start the runtime layers, and watch the process end. */
  async started(reports: boolean): Promise<void> {
    const child = this.child as ChildProcess;
    const prepared = this.prepared as PreparedHost;
    // Listened to from the start: a guest host can end before its pid is known.
    const exit = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (code, sig) => r([code, sig])));
    this.listen(child.stdio[GUEST_HOST_FD.channel] as Duplex | null);
    this.onMessage((m) => {
      const msg = parseGuestHostMessage(m);
      if (msg?.type === 'exit') this.reported.set(msg.guest, msg.exit);
    });
    // The launcher's last words (an OOM kill) arrive on the report pipe just before it exits.
    const reportDone = !reports
      ? Promise.resolve()
      : new Promise<void>((r) => {
          (child.stdio[GUEST_HOST_FD.report] as Readable).once('close', () => r());
          void exit.then(() => setTimeout(r, 1000).unref());
        });
    const ready = reports ? await readReport(child, () => (this.oomReported = true)) : { pid: child.pid ?? -1 };
    this.pid = ready.pid;
    this.veth = ready.veth ?? null;
    // The reasons below reach the user as the cause of a GuestStartError (launch).
    if (this.pid <= 0) throw new Error('could not start the guest host process');
    this.start = startTime(this.pid);
    this.layers = prepared.layers;
    this.watch();
    if (this.launcher && child.pid !== undefined && child.pid !== this.pid) this.launcherRecord = { pid: child.pid, start: startTime(child.pid) };
    this.ended = exit.then(async ([code, signal]) => {
      await reportDone;
      // Its last output read to the end (the launcher closed its ends as it exited), then what the
      // launcher took; after `detach` both are the next host side's (its `attach` appends the tails).
      await this.pump?.drained();
      if (!this.detached) OutputPump.flushTails(this.outputs);
      for (const l of this.layers) l.unwatch?.('ended');
      const oom = this.oomReported || prepared.oomKilled;
      // The launcher deletes the table as the guest host ends, unless it was killed itself.
      await prepared.release(this.launcher && signal === null);
      return { violation: this.violation(oom), status: { code, signal, wrapped: child.pid !== this.pid } };
    });
  }

  /**
   * Re-attach to a detached guest host after the process that started it went away (an agent
   * restart): same pid, no restart, and every runtime layer its report claims running again. Null
   * when it is gone (its guests' exit records, if any, are in the run directory).
   */
  static attach(runDir: string, restore: (r: GuestRecord) => Guest): GuestHost | null {
    const rec = hostRecordOf(runDir);
    if (rec === null) return null;
    // A pid alone could have been reused by an unrelated process after a reboot.
    if (startTime(rec.pid) === null || startTime(rec.pid) !== rec.start) {
      // Ended while no host side read its output: what its launcher took from the pipes goes to the
      // log (once the launcher, which takes it, has ended too; 2 s at most).
      for (let i = 0; i < 40 && rec.launcher !== undefined && startTime(rec.launcher.pid) === rec.launcher.start; i++) sleepSync(50);
      if (Array.isArray(rec.outputs)) OutputPump.flushTails(rec.outputs);
      return null;
    }
    const host = new GuestHost(rec.id ?? rec.guests[0]?.id.split('/')[0] ?? 'guest', null, null, rec.guests.map(restore), runDir, true);
    host.pid = rec.pid;
    host.start = rec.start;
    host.ctl = typeof rec.ctl === 'string' ? rec.ctl : null;
    host.processCtl = typeof rec.processCtl === 'string' ? rec.processCtl : null;
    host.recordedCgroups = rec.cgroups;
    if (rec.launcher !== undefined) host.launcherRecord = rec.launcher;
    if (typeof rec.veth === 'string' && VETH_INTERFACE.test(rec.veth)) host.veth = rec.veth;
    // What it wrote while no host side read waited in its output pipes: read on from there.
    if (Array.isArray(rec.outputs) && rec.outputs.length > 0) {
      host.outputs = rec.outputs;
      host.pump = OutputPump.attach(rec.outputs);
    }
    // The other guests of a shared host already re-attached: one watch of the process for all of them.
    const key = `${rec.pid}:${rec.start}`;
    const same = host.ctl === null ? undefined : attachedShared.get(key);
    if (same !== undefined) {
      host.layers = same.layers;
      host.ended = same.ended;
      return host;
    }
    if (host.ctl !== null) attachedShared.set(key, host);
    host.layers = LAYER_MODULES.map((m) => m.reattach(rec.layers[m.name] ?? null));
    // A throttle killed between its SIGSTOP and SIGCONT (the agent died) left the guest host stopped.
    signal(rec.pid, 'SIGCONT');
    host.watch();
    host.ended = new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (startTime(rec.pid) === rec.start) return;
        clearInterval(poll);
        resolve();
      }, 100);
    }).then(async () => {
      for (const l of host.layers) l.unwatch?.('ended');
      // The launcher, still the guest host's parent, records an OOM kill and the exit record and
      // then removes the cgroups: wait for it (2 s at most); if it was killed itself, read the
      // cgroups directly.
      const launcherRuns = () => rec.launcher !== undefined && startTime(rec.launcher.pid) === rec.launcher.start;
      for (let i = 0; i < 40 && (launcherRuns() || rec.cgroups.some((d) => fs.existsSync(d))); i++) await new Promise((r) => setTimeout(r, 50));
      await host.pump?.drained();
      OutputPump.flushTails(host.outputs);
      const oom = readOomFile(path.join(runDir, OOM_FILE)) || (host.ctl !== null && readOomFile(sharedOomFile(host.ctl))) || rec.cgroups.some((d) => fs.existsSync(d) && cgroupOomKilled(d));
      const violation = host.violation(oom);
      for (const l of host.layers) await l.release?.(false);
      for (const d of rec.cgroups) {
        killLeftIn(d);
        removeCgroupDir(d);
      }
      attachedShared.delete(key);
      if (host.ctl !== null) removeCtl(host.ctl);
      return { violation, status: null };
    });
    return host;
  }

  private watch(): void {
    for (const l of this.layers) {
      l.watch?.(this.pid, (v) => {
        this.violated ??= v;
        signal(this.pid, 'SIGKILL');
      });
    }
  }

  private violation(oom: boolean): GuestExit | null {
    for (const l of this.layers) {
      const v = l.violation?.({ oom });
      if (v !== undefined && v !== null) return v;
    }
    return this.violated;
  }

  save(file: string, layers: readonly GrantLayers[], guests: GuestRecord[] = this.guests.map((g) => g.record), durable = true): void {
    writeFileAtomic(file, JSON.stringify(this.record(layers, guests)), { durable });
  }

  /** What a re-attaching host needs: this host's record with `guests` in it. */
  record(layers: readonly GrantLayers[], guests: GuestRecord[]): GuestHostRecord {
    return {
      id: this.id,
      pid: this.pid,
      start: this.start,
      cgroups: this.prepared?.cgroupDirs ?? this.recordedCgroups,
      layers: Object.fromEntries(LAYER_MODULES.map((m, i) => [m.name, layers[i]?.record ?? null])),
      guests,
      ...(this.ctl === null ? {} : { ctl: this.ctl }),
      ...(this.processCtl === null ? {} : { processCtl: this.processCtl }),
      ...(this.outputs.length === 0 ? {} : { outputs: this.outputs }),
      ...(this.launcherRecord === null ? {} : { launcher: this.launcherRecord }),
      ...(this.veth === null ? {} : { veth: this.veth }),
    };
  }

  /** How the process ended (a shared host ends its remaining guests with it). */
  whenEnded(): Promise<HostEnd> {
    return this.ended;
  }

  /** How `guest` ended, once its guest host is gone. */
  async exitOf(guest: Guest): Promise<GuestExit> {
    const end = await this.ended;
    return classifyExit({ violation: end.violation, reported: this.reported.get(guest.id) ?? guest.recordedExit(), stopRequested: this.stopRequested, status: end.status });
  }

  /** CPU and resident memory of the process (shared by its guests). */
  usage(): { cpuSeconds: number; memoryBytes: number } {
    return { cpuSeconds: cpuSeconds(this.pid) ?? 0, memoryBytes: rssBytes(this.pid) ?? 0 };
  }

  /**
   * SIGTERM, then SIGKILL after the grace period. Inside the wall the guest host is pid 1 of its
   * pid namespace, and the kernel drops a signal pid 1 has no handler for yet (while Node.js
   * boots), so SIGTERM is repeated until it ends or the grace period is over (its handler is
   * idempotent).
   */
  async stop(graceMs: number): Promise<void> {
    this.stopRequested = true;
    for (const l of this.layers) l.unwatch?.('stopping');
    // Its listen ports stop being sent to it before it ends: a connect in the moment between its end
    // and its wall shell's removal of the table would go to an address no interface has any more,
    // and one from this machine (not forwarded, so not refused by netns.ts's shared chain) would
    // wait until it timed out. New connections are refused from here on; open ones go on, and so
    // does its way out (the table's masquerade) while it shuts down. Only while it runs: the
    // interface of one that has ended may be another guest host's by now.
    if (this.veth !== null && startTime(this.pid) === this.start) await stopVethRedirects(this.veth);
    this.veth = null;
    signal(this.pid, 'SIGTERM');
    const again = setInterval(() => signal(this.pid, 'SIGTERM'), 100);
    const kill = setTimeout(() => {
      clearInterval(again);
      signal(this.pid, 'SIGKILL');
    }, graceMs);
    await this.ended;
    clearInterval(again);
    clearTimeout(kill);
  }

  /** Stop watching without stopping it (agent shutdown; a detached guest host keeps running). */
  detach(): void {
    this.detached = true;
    for (const l of this.layers) l.unwatch?.('detached');
    // Left in the pipes for the next host side (an agent that re-attaches).
    this.pump?.close();
    if (this.child === null) return;
    (this.child.stdio[GUEST_HOST_FD.report] as Readable | null | undefined)?.destroy();
    this.child.unref();
    // The host sees its channel end (a detached shared host then listens on its control FIFOs).
    this.channel?.destroy();
  }
}

/** Shared guest hosts this process re-attached, by pid and start time. */
const attachedShared = new Map<string, GuestHost>();

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * The guest host's pid from the report pipe (bubblewrap's `--info-fd` report or the launcher's
 * `ready`), then its other messages (`oom`) until the pipe ends. The pipe is drained to its end,
 * never closed early: bubblewrap writes its report in pieces and dies of SIGPIPE (leaving its
 * half-made child waiting) if the reader goes away between them.
 */
function readReport(child: ChildProcess, onOom: () => void): Promise<{ pid: number; veth?: string }> {
  const pipe = child.stdio[GUEST_HOST_FD.report] as Readable;
  const docs = new JsonDocuments();
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => done(new Error('no pid reported within 10 s')), 10_000);
    const done = (r: { pid: number; veth?: string } | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    pipe.on('data', (b: Buffer) => {
      for (const doc of docs.push(b.toString())) {
        const msg = doc instanceof Error ? null : parseGuestHostMessage(doc);
        if (msg?.type === 'ready') done(msg);
        else if (msg?.type === 'refused') done(new Error(msg.message));
        else if (msg?.type === 'oom') onOom();
        else done(new Error(`unreadable start report${doc instanceof Error ? `: ${doc.message}` : ''}`));
      }
    });
    pipe.on('end', () => done(new Error(docs.rest || `the launcher exited (${child.exitCode ?? child.signalCode ?? 'running'})`)));
    pipe.on('error', (e) => done(e));
  });
}

/** True when the launcher recorded an OOM kill (a file in the agent's own run directory). */
function readOomFile(file: string): boolean {
  try {
    return parseGuestHostMessage(JSON.parse(fs.readFileSync(file, 'utf8')))?.type === 'oom';
  } catch {
    return false; // no file: no OOM kill
  }
}

/** A record as this version writes it, also from one written before grant modules (pid, report, runtime, ...). */
function upgradeRecord(r: unknown, runDir: string): GuestHostRecord {
  const o = r as GuestHostRecord & { report?: GuestRecord['report']; dirs?: GuestRecord['dirs']; firewall?: unknown; mounts?: string[]; memoryLimit?: number; runtime?: { throttleCores?: number; watchdogBytes?: number } };
  if (typeof o.pid !== 'number') throw new TypeError('not a guest host record');
  if (o.layers !== undefined && Array.isArray(o.guests)) return o;
  return {
    pid: o.pid,
    start: o.start,
    cgroups: o.cgroups ?? [],
    layers: {
      memory: { cgroupBytes: o.memoryLimit, watchdogBytes: o.runtime?.watchdogBytes },
      cpu: { throttleCores: o.runtime?.throttleCores },
      disk: { mounts: o.mounts ?? [] },
      network: { firewall: o.firewall ?? null },
    },
    guests: [{ id: 'guest', report: o.report as GuestRecord['report'], dirs: o.dirs ?? [], exitRecord: path.join(runDir, 'exit.json') }],
  };
}

/** A shared host's control FIFOs and its journal, once it has ended. */
export function removeCtl(ctl: string): void {
  fs.rmSync(ctl, { recursive: true, force: true });
  fs.rmSync(journalOf(ctl), { force: true });
  fs.rmSync(sharedOomFile(ctl), { force: true });
}

/** Where a shared guest host's launcher records an OOM kill (beside its journal). */
const sharedOomFile = (ctl: string): string => `${ctl}.${OOM_FILE}`;

/**
 * The record of the guest host that runs (or ran) the guest of a run directory: its `guest.json`
 * (a `process` guest, or a shared one from before the journals), or its line in a shared host's
 * journal, whichever was written last. Both can be there: a process that went from `process` to
 * `shared` isolation (or back) keeps the other one's record, whose host may still run.
 */
export function hostRecordOf(runDir: string): GuestHostRecord | null {
  const file = path.join(runDir, 'guest.json');
  let own: { record: GuestHostRecord; at: number } | null = null;
  try {
    own = { record: upgradeRecord(JSON.parse(fs.readFileSync(file, 'utf8')), runDir), at: fs.statSync(file).mtimeMs };
  } catch {
    // none, or not readable as one
  }
  const shared = sharedGuestRecord(runDir);
  if (own === null || (shared !== null && shared.at > own.at)) return shared?.record ?? null;
  return own.record;
}
