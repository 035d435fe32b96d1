import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { formatConnectTarget, parseNetworkGrant } from '@lowcloud/api';
import type { GuestBootOptions } from '../guest/options.js';
import type { Enforcement, EnforcementReport, GuestExit, GuestHandle, GuestOptions, GuestUsage } from '../types.js';
import { writeFileAtomic } from '../common/durable-file.js';
import { usageOf } from '../common/usage.js';
import { GrantUnavailableError } from '../errors.js';
import { admit } from './admission.js';
import { probeCapabilitiesSync } from './capabilities.js';
import { cgroupOomKilled, GuestCgroup, removeCgroupDir } from './cgroup.js';
import { prepareGuestFile, readExitRecord } from './exit-record.js';
import { GuestFirewall, sweepStaleFirewalls, systemNameservers, type FirewallRecord } from './firewall.js';
import { mountDiskImage, unmountDiskImage } from './disk-image.js';
import { codeView, isolationReport, launcherArgs, probeWall, wallArgs } from './isolation.js';
import { cpuSeconds, rssBytes, startTime } from './proc.js';
import { seccompProgram } from './seccomp.js';
import { CpuThrottle } from './throttle.js';

/**
 * The guest host process is a whole Node.js + V8 (~40 MiB resident before the guest allocates).
 * The memory grant caps the guest's linear memory exactly; the kernel layer and the watchdog cap
 * the whole process at grant + this overhead, so the runtime itself can live.
 */
export const HOST_OVERHEAD_BYTES = 96 * 2 ** 20;

/** Compiled guest host entry: always the built dist/ file, also when this module runs from src/. */
function guestMain(): string {
  const here = fileURLToPath(import.meta.url);
  const dist = here.replace(`${path.sep}src${path.sep}`, `${path.sep}dist${path.sep}`).replace(/\.ts$/, '.js');
  return path.join(path.dirname(dist), '..', 'guest', 'main.js');
}

export interface SpawnTuning {
  /** Force the runtime layer of the grants even where cgroups are available (tests, and `--no-kernel`). */
  kernel?: boolean;
  /** Run the guest host without the kernel wall (tests of the JS layer alone). */
  wall?: boolean;
}

/** What a re-attaching host needs to restore (guest.json). */
interface GuestRecord {
  pid: number;
  start: string | null;
  report: EnforcementReport;
  dirs: { host: string; readonly: boolean }[];
  firewall?: FirewallRecord | null;
  mounts?: string[];
  /** Every cgroup directory made for the guest (v1 and v2). */
  cgroups?: string[];
  /** Runtime layers the report claims, restored on re-attach. */
  runtime?: { throttleCores?: number; watchdogBytes?: number };
  /** The kernel memory limit (bytes), when a memory cgroup enforces the grant. */
  memoryLimit?: number;
}

/** Written by the root launcher when the kernel OOM-killed the guest's cgroup (run directory). */
const OOM_FILE = 'oom-killed';
const oomViolation = (limitBytes: number | undefined): GuestExit => ({ kind: 'violation', grant: 'memory', detail: `killed by the kernel: past the cgroup memory limit${limitBytes === undefined ? '' : ` of ${limitBytes} bytes`}` });

let swept = false;

export async function spawnGuest(opts: GuestOptions, tuning: SpawnTuning = {}): Promise<GuestHandle & { child: ChildProcess }> {
  // The grant's targets are parsed here, once, before anything is made: both layers get typed values.
  const network = parseNetworkGrant(opts.grants.network);
  const caps = probeCapabilitiesSync();
  const admitted = await admit(opts.wasm, opts.grants.memory, opts.cacheDir);
  const useKernel = tuning.kernel !== false && caps.root;
  const { wall, reason: noWall } = tuning.wall === false ? { wall: null, reason: 'turned off for this guest' } : probeWall();
  const myUid = process.getuid?.() ?? 0;
  // The guest host's uid: the agent's per-process uid as root; otherwise the caller's.
  const uid = wall?.mode === 'root' && opts.uid !== undefined ? opts.uid : myUid;
  const chownTo = uid === myUid ? null : uid;
  const detached = opts.detached === true;
  if (detached && opts.runDir === undefined) throw new Error('detached guests need a runDir');
  const runDir = opts.runDir ?? null;
  if (runDir !== null) fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const limitBytes = opts.grants.memory === undefined ? undefined : opts.grants.memory + HOST_OVERHEAD_BYTES;

  // Kernel objects first, all of them before any guest code: a cgroup the kernel refuses means the
  // guest does not run (a guest running without the limits its report claims is the worse outcome).
  const cgroupName = `g-${Date.now()}-${randomBytes(4).toString('hex')}`;
  let cgroup: GuestCgroup | null = null;
  if (useKernel && caps.cgroup !== null && (opts.grants.memory !== undefined || opts.grants.cpu !== undefined)) {
    try {
      cgroup = GuestCgroup.create(caps.cgroup, cgroupName, { ...(limitBytes === undefined ? {} : { memoryBytes: limitBytes }), ...(opts.grants.cpu === undefined ? {} : { cpuCores: opts.grants.cpu }) }, caps.controllers);
    } catch (err) {
      throw new GrantUnavailableError(opts.grants.memory !== undefined ? 'memory' : 'cpu', `${err instanceof Error ? err.message : String(err)}; the guest was not started`);
    }
  }
  let firewall: GuestFirewall | null = null;
  let firewallError: string | null = null;
  if (useKernel && caps.nftables) {
    // Once per process: remove what guests of killed owners left behind.
    if (!swept) {
      swept = true;
      sweepStaleFirewalls();
    }
    try {
      firewall = await GuestFirewall.create(cgroupName, network, admitted.kind === 'component', systemNameservers());
    } catch (err) {
      firewallError = err instanceof Error ? err.message : String(err);
    }
  }
  const cgroupDirs = [...new Set([...(cgroup?.all ?? []), ...(firewall === null ? [] : [firewall.record.dir])])];

  // The disk grant's kernel layer: an ext4 image mounted over each writable directory that has one.
  const mounted: string[] = [];
  const diskKernel: Enforcement[] = [];
  if (opts.grants.disk !== undefined) {
    for (const d of opts.dirs.filter((x) => x.image !== undefined && x.readonly !== true)) {
      if (!useKernel || !caps.diskImages) continue;
      try {
        diskKernel.push({ mechanism: mountDiskImage(d.image as string, d.host, opts.grants.disk), level: 'kernel' });
        mounted.push(d.host);
      } catch (err) {
        diskKernel.push({ mechanism: `kernel layer not used: ${err instanceof Error ? err.message : String(err)}`, level: 'advisory' });
      }
    }
  }
  const releaseKernelResources = async (tableGone = false): Promise<void> => {
    for (const dir of mounted) unmountDiskImage(dir);
    await firewall?.remove({ tableGone });
    cgroup?.remove();
  };

  // A guest host already started when a later step fails: ended before its kernel objects go, or
  // its cgroup could not be removed (a cgroup with a process in it stays) and would wait for a sweep.
  let started: { child: ChildProcess; exit: Promise<unknown>; pid: number | null } | null = null;
  try {
    const dirs = opts.dirs.map((d) => ({ host: path.resolve(d.host), guest: d.guest, readonly: d.readonly === true }));
    // The agent's data directories belong to the guest's uid (never `lowcloud run`'s: those are the user's).
    if (chownTo !== null) for (const d of dirs.filter((x) => !x.readonly)) ownDirectory(d.host, chownTo);
    const boot: GuestBootOptions = {
      modulePath: admitted.modulePath,
      kind: admitted.kind,
      argv: [opts.argv0 ?? path.basename(opts.wasm), ...opts.args],
      env: opts.env,
      dirs,
      config: opts.config.map((c) => ({ guest: c.guest, host: path.resolve(c.host) })),
      grants: opts.grants,
      network,
      stdin: opts.stdin === 'inherit',
      stdout: opts.stdout ?? 'inherit',
      stderr: opts.stderr ?? 'inherit',
      runDir,
      detached,
      walled: wall !== null,
    };
    // Every file the guest host writes is made here, owned by its uid; it sees no directory to add to.
    const writableFiles: string[] = [];
    if (runDir !== null) {
      fs.rmSync(path.join(runDir, OOM_FILE), { force: true }); // a previous run's
      prepareGuestFile(path.join(runDir, 'exit.json'), chownTo, true);
      writableFiles.push(path.join(runDir, 'exit.json'));
    }
    for (const t of [boot.stdout, boot.stderr]) {
      if (typeof t !== 'object') continue;
      for (const f of [t.file, ...Array.from({ length: t.keep }, (_, i) => `${t.file}.${i + 1}`)]) {
        if (writableFiles.includes(f)) continue;
        prepareGuestFile(f, chownTo, false);
        writableFiles.push(f);
      }
    }
    const optionsPath = runDir !== null ? path.join(runDir, 'options.json') : path.join(os.tmpdir(), `lowcloud-guest-${randomUUID()}.json`);
    fs.rmSync(optionsPath, { force: true });
    fs.writeFileSync(optionsPath, JSON.stringify(boot), { mode: 0o600, flag: 'wx' });
    if (chownTo !== null) fs.chownSync(optionsPath, chownTo, chownTo);

    const stdio = (t: GuestOptions['stdout']): 'inherit' | 'pipe' | 'ignore' => (t === 'pipe' ? 'pipe' : t === 'inherit' || t === undefined ? (detached ? 'ignore' : 'inherit') : 'ignore');
    const node = [process.execPath, '--max-old-space-size=64', guestMain(), optionsPath];
    const launcher = cgroupDirs.length > 0 || firewall !== null;
    const command = wall === null ? node : [wall.bwrap, ...wallArgs(wall, {
      uid: wall.mode === 'root' ? uid : null,
      ro: [...codeView(), admitted.modulePath, optionsPath, ...boot.config.map((c) => c.host), ...dirs.filter((d) => d.readonly).map((d) => d.host)],
      rw: [...writableFiles, ...dirs.filter((d) => !d.readonly).map((d) => d.host)],
      seccompFd: 5,
      infoFd: 4,
      dieWithParent: !detached,
      command: node,
    })];
    const [file, ...args] = launcher ? ['/bin/sh', ...launcherArgs(cgroupDirs, firewall === null ? null : { nft: firewall.nft, table: firewall.record.table }, wall === null, runDir === null ? null : path.join(runDir, OOM_FILE), command)] : command;
    const reportsPid = launcher || wall !== null;
    const child = spawn(file as string, args, {
      stdio: [
        opts.stdin === 'inherit' && !detached ? 'inherit' : 'ignore',
        stdio(opts.stdout),
        stdio(opts.stderr),
        detached ? 'ignore' : 'ipc',
        ...(reportsPid ? ['pipe' as const] : []),
        ...(wall !== null ? ['pipe' as const] : []),
      ],
      detached,
      // The guest gets its environment from the grant only; the host process gets nothing either.
      env: {},
    });
    // Listened to from the start: a guest host can end before its pid is known.
    const childExit = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (code, sig) => r([code, sig])));
    started = { child, exit: childExit, pid: null };
    // The launcher's last words (an OOM kill) arrive on the report pipe just before it exits.
    const reportDone = !(launcher || wall !== null)
      ? Promise.resolve()
      : new Promise<void>((r) => {
          (child.stdio[4 as number] as Readable).once('close', () => r());
          void childExit.then(() => setTimeout(r, 1000).unref());
        });
    if (wall !== null) {
      const filter = child.stdio[5 as number] as unknown as Writable;
      // A wall that failed to start closes its end early; its failure is reported through the pid pipe.
      filter.on('error', () => undefined);
      filter.end(seccompProgram());
    }
    let pid: number;
    // After the pid, the launcher reports an OOM kill of the guest's cgroup here as it ends.
    let launcherReport = '';
    try {
      // The report pipe ends (with or without a pid) at the latest when the launcher does.
      pid = reportsPid ? await childPid(child, (t) => (launcherReport += t)) : (child.pid ?? -1);
      if (pid <= 0) throw new Error('could not start the guest host process');
      started.pid = pid;
    } catch (err) {
      child.kill('SIGKILL');
      if (runDir === null) fs.rmSync(optionsPath, { force: true });
      throw new Error(`the guest host did not start inside its confinement: ${err instanceof Error ? err.message : String(err)}; no guest code ran`);
    }

    let throttle: CpuThrottle | null = null;
    let watchdog: NodeJS.Timeout | null = null;
    const report = emptyReport();
    report.isolation.push(...isolationReport(wall, noWall, uid));
    if (opts.grants.memory !== undefined) {
      report.memory.push({ mechanism: `linear memory maximum rewritten to ${opts.grants.memory} bytes (memory.grow fails past it)`, level: 'runtime' });
      report.memory.push({ mechanism: 'V8 heap capped (worker resourceLimits, --max-old-space-size)', level: 'runtime' });
    }
    if (cgroup?.dirs.memory !== undefined) report.memory.unshift({ mechanism: `cgroup ${cgroup.version} memory limit ${limitBytes} bytes (grant + host overhead)`, level: 'kernel' });
    if (cgroup?.dirs.cpu !== undefined) report.cpu.push({ mechanism: `cgroup ${cgroup.version} CPU quota ${opts.grants.cpu} cores`, level: 'kernel' });
    let violation: GuestExit | null = null;
    const runtime: NonNullable<GuestRecord['runtime']> = {};
    if (opts.grants.cpu !== undefined && cgroup?.dirs.cpu === undefined) {
      throttle = new CpuThrottle(pid, opts.grants.cpu).start();
      runtime.throttleCores = opts.grants.cpu;
      report.cpu.push({ mechanism: `SIGSTOP/SIGCONT duty cycle at ${opts.grants.cpu} cores`, level: 'runtime' });
    }
    if (limitBytes !== undefined && cgroup?.dirs.memory === undefined) {
      watchdog = rssWatchdog(pid, limitBytes, (v) => {
        violation = v;
      });
      runtime.watchdogBytes = limitBytes;
      report.memory.push({ mechanism: `RSS watchdog kills past ${limitBytes} bytes (grant + host overhead)`, level: 'runtime' });
    }
    if (opts.grants.cpu === undefined) report.cpu.push({ mechanism: 'not limited (no cpu grant)', level: 'advisory' });
    if (opts.grants.memory === undefined) report.memory.push({ mechanism: 'not limited (no memory grant)', level: 'advisory' });
    report.disk.push(
      opts.grants.disk === undefined
        ? { mechanism: opts.dirs.some((d) => d.readonly !== true) ? 'writable directories without a byte quota' : 'no writable directory', level: opts.dirs.some((d) => d.readonly !== true) ? 'advisory' : 'runtime' }
        : { mechanism: `byte quota ${opts.grants.disk} on writable directories: each file's size once plus 4096 per directory entry, charged before the bytes land (EDQUOT)`, level: 'runtime' },
    );
    report.disk.push({ mechanism: 'preopened directories only, walked one component at a time; links followed only inside them, never to an absolute path or above them', level: 'runtime' });
    report.disk.unshift(...diskKernel.filter((e) => e.level === 'kernel'));
    report.disk.push(...diskKernel.filter((e) => e.level !== 'kernel'));
    if (admitted.kind === 'module') {
      report.network.push({ mechanism: 'WASI preview1 has no socket imports: no network access', level: 'runtime' });
    } else {
      const n = network;
      report.network.push({
        mechanism: `wasi:sockets allow-list: listen [${n.listen.join(', ')}], connect [${n.connect.map(formatConnectTarget).join(', ')}], UDP ${n.udp ? 'on granted ports, to granted targets' : 'denied'}, name lookup only for granted hosts`,
        level: 'runtime',
      });
    }
    if (firewall !== null) report.network.unshift({ mechanism: firewall.mechanism, level: 'kernel' });
    else if (firewallError !== null) report.network.push({ mechanism: `kernel layer not used: ${firewallError}`, level: 'advisory' });
    if (runDir !== null) {
      const record: GuestRecord = { pid, start: startTime(pid), report, dirs: boot.dirs, firewall: firewall?.record ?? null, mounts: mounted, cgroups: cgroupDirs, runtime, ...(cgroup?.dirs.memory === undefined ? {} : { memoryLimit: limitBytes }) };
      writeFileAtomic(path.join(runDir, 'guest.json'), JSON.stringify(record));
    }

    let ipcExit: GuestExit | null = null;
    child.on('message', (m: { type?: string; exit?: GuestExit }) => {
      if (m.type === 'exit' && m.exit !== undefined) ipcExit = m.exit;
    });
    let stopRequested = false;
    const wrapped = child.pid !== pid;
    const exited = new Promise<GuestExit>((resolve) => {
      void childExit.then(async ([code, signal]) => {
        await reportDone;
        throttle?.stop();
        if (watchdog !== null) clearInterval(watchdog);
        const oom = launcherReport.includes('oom-killed') || cgroup?.oomKilled() === true;
        if (runDir === null) fs.rmSync(optionsPath, { force: true });
        // The launcher deletes the table as the guest host ends, unless it was killed itself.
        await releaseKernelResources(launcher && signal === null);
        if (violation !== null) return resolve(violation);
        if (oom) return resolve(oomViolation(limitBytes));
        if (ipcExit !== null) return resolve(ipcExit);
        const recorded = runDir === null ? null : readExitRecord(runDir);
        if (recorded !== null) return resolve(recorded);
        if (stopRequested) return resolve({ kind: 'stopped' });
        if (signal !== null) return resolve({ kind: 'signal', signal });
        // Wrapped (launcher, bubblewrap): a guest host that did not finish was killed; 128 + signal.
        if (wrapped && code !== null && code > 128) return resolve({ kind: 'signal', signal: signalName(code - 128) });
        resolve({ kind: 'exit', code: code ?? 0 });
      });
    });

    const writable = boot.dirs.filter((d) => !d.readonly).map((d) => d.host);
    return {
      pid,
      child,
      report,
      exited,
      async usage(): Promise<GuestUsage> {
        return { cpuSeconds: cpuSeconds(pid) ?? 0, memoryBytes: rssBytes(pid) ?? 0, diskBytes: writable.reduce((s, d) => s + usageOf(d), 0) };
      },
      async stop(graceMs = 5000): Promise<GuestExit> {
        stopRequested = true;
        throttle?.stop();
        return terminate(pid, graceMs, exited);
      },
      detach(): void {
        throttle?.stop();
        if (watchdog !== null) clearInterval(watchdog);
        (child.stdio[4 as number] as Readable | null | undefined)?.destroy();
        child.unref();
        if (child.connected) child.disconnect();
      },
    };
  } catch (err) {
    if (started !== null) {
      if (started.pid !== null) signal(started.pid, 'SIGKILL');
      started.child.kill('SIGKILL');
      await Promise.race([started.exit, new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    await releaseKernelResources();
    throw err;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * SIGTERM, then SIGKILL after the grace period. Inside the wall the guest host is pid 1 of its pid
 * namespace, and the kernel drops a signal pid 1 has no handler for yet (while Node.js boots), so
 * SIGTERM is repeated until the guest host ends or the grace period is over (its handler is
 * idempotent).
 */
async function terminate(pid: number, graceMs: number, exited: Promise<GuestExit>): Promise<GuestExit> {
  signal(pid, 'SIGTERM');
  const again = setInterval(() => signal(pid, 'SIGTERM'), 100);
  const kill = setTimeout(() => {
    clearInterval(again);
    signal(pid, 'SIGKILL');
  }, graceMs);
  const r = await exited;
  clearInterval(again);
  clearTimeout(kill);
  return r;
}

function signalName(n: number): string {
  return Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}

/**
 * The guest host's pid as bubblewrap (`--info-fd`) or the launcher reports it on fd 4. The pipe is
 * drained to its end, never closed early: bubblewrap writes its report in pieces and dies of
 * SIGPIPE (leaving its half-made child waiting) if the reader goes away between them.
 */
function childPid(child: ChildProcess, onText: (text: string) => void = () => undefined): Promise<number> {
  const info = child.stdio[4] as Readable;
  return new Promise((resolve, reject) => {
    let text = '';
    info.on('data', (b: Buffer) => onText(b.toString()));
    let settled = false;
    const timer = setTimeout(() => done(new Error('no pid reported within 10 s')), 10_000);
    const done = (r: number | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    info.on('data', (b: Buffer) => {
      if (settled) return;
      text += b.toString();
      const m = /"child-pid":\s*(\d+)\s*[,}]/.exec(text);
      if (m !== null) done(Number(m[1]));
      else if (text.length > 4096) done(new Error('unreadable start report'));
    });
    info.on('end', () => done(new Error(text.trim() || `the launcher exited (${child.exitCode ?? child.signalCode ?? 'running'})`)));
    info.on('error', (e) => done(e));
  });
}

/** The runtime layer of the memory grant where no cgroup holds it: kill past the limit. */
function rssWatchdog(pid: number, limitBytes: number, onViolation: (v: GuestExit) => void): NodeJS.Timeout {
  const t = setInterval(() => {
    const rss = rssBytes(pid);
    if (rss !== null && rss > limitBytes) {
      onViolation({ kind: 'violation', grant: 'memory', detail: `resident memory ${rss} bytes passed ${limitBytes}` });
      signal(pid, 'SIGKILL');
    }
  }, 250);
  t.unref();
  return t;
}

/** Give a data directory to the guest's uid, 0700, never following a link (its parent is the host's). */
function ownDirectory(dir: string, uid: number): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  fs.lchownSync(dir, uid, uid);
  fs.chmodSync(dir, 0o700);
}

export function emptyReport(): EnforcementReport {
  return { memory: [] as Enforcement[], cpu: [], disk: [], network: [], isolation: [] };
}

/**
 * Re-attach to a detached guest after the process that started it went away (an agent restart):
 * same pid, no restart, and every runtime layer its report claims running again. Returns null
 * when the guest host is gone (its exit record, if any, is in runDir/exit.json).
 */
export async function attachGuest(runDir: string): Promise<GuestHandle | null> {
  let info: GuestRecord;
  try {
    info = JSON.parse(fs.readFileSync(path.join(runDir, 'guest.json'), 'utf8')) as GuestRecord;
  } catch {
    return null;
  }
  // A pid alone could have been reused by an unrelated process after a reboot.
  if (startTime(info.pid) === null || startTime(info.pid) !== info.start) return null;
  const pid = info.pid;
  info.report.isolation ??= []; // recorded by a version from before the wall
  // A throttle killed between its SIGSTOP and SIGCONT (the agent died) left the guest stopped.
  signal(pid, 'SIGCONT');
  const throttle = info.runtime?.throttleCores === undefined ? null : new CpuThrottle(pid, info.runtime.throttleCores).start();
  let violation: GuestExit | null = null;
  const watchdog =
    info.runtime?.watchdogBytes === undefined
      ? null
      : rssWatchdog(pid, info.runtime.watchdogBytes, (v) => {
          violation = v;
        });
  let stopRequested = false;
  const exited = new Promise<GuestExit>((resolve) => {
    const poll = setInterval(() => {
      if (startTime(pid) === info.start) return;
      clearInterval(poll);
      throttle?.stop();
      if (watchdog !== null) clearInterval(watchdog);
      for (const dir of info.mounts ?? []) unmountDiskImage(dir);
      const fw = info.firewall ?? null;
      void (async () => {
        // The launcher, still the guest host's parent, records an OOM kill and then removes the
        // cgroups: wait for it (2 s at most); if it was killed itself, read the cgroups directly.
        const cgroups = info.cgroups ?? [];
        for (let i = 0; i < 40 && cgroups.some((d) => fs.existsSync(d)); i++) await new Promise((r) => setTimeout(r, 50));
        const oom = info.memoryLimit !== undefined && (fs.existsSync(path.join(runDir, OOM_FILE)) || cgroups.some((d) => fs.existsSync(d) && cgroupOomKilled(d)));
        const exit = readExitRecord(runDir);
        const outcome: GuestExit = violation ?? (oom ? oomViolation(info.memoryLimit) : null) ?? exit ?? (stopRequested ? { kind: 'stopped' } : { kind: 'signal', signal: 'unknown (exited while detached)' });
        await (fw === null ? Promise.resolve() : GuestFirewall.release(fw, false));
        for (const d of cgroups) removeCgroupDir(d);
        resolve(outcome);
      })();
    }, 100);
  });
  const writable = info.dirs.filter((d) => !d.readonly).map((d) => d.host);
  return {
    pid,
    report: info.report,
    exited,
    async usage() {
      return { cpuSeconds: cpuSeconds(pid) ?? 0, memoryBytes: rssBytes(pid) ?? 0, diskBytes: writable.reduce((s, d) => s + usageOf(d), 0) };
    },
    async stop(graceMs = 5000) {
      stopRequested = true;
      throttle?.stop();
      return terminate(pid, graceMs, exited);
    },
    detach() {
      throttle?.stop();
      if (watchdog !== null) clearInterval(watchdog);
    },
  };
}
