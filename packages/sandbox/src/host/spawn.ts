import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GuestBootOptions } from '../guest/options.js';
import type { Enforcement, EnforcementReport, GuestExit, GuestHandle, GuestOptions, GuestUsage } from '../types.js';
import { usageOf } from '../common/usage.js';
import { admit } from './admission.js';
import { probeCapabilitiesSync } from './capabilities.js';
import { GuestCgroup } from './cgroup.js';
import { GuestFirewall, sweepStaleFirewalls, systemNameservers, type FirewallRecord } from './firewall.js';
import { mountDiskImage, unmountDiskImage } from './disk-image.js';
import { cpuSeconds, rssBytes, startTime } from './proc.js';
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
  /** Force the runtime layer even where cgroups are available (tests, and `--no-kernel`). */
  kernel?: boolean;
}

let swept = false;

export async function spawnGuest(opts: GuestOptions, tuning: SpawnTuning = {}): Promise<GuestHandle & { child: ChildProcess }> {
  const caps = probeCapabilitiesSync();
  const admitted = await admit(opts.wasm, opts.grants.memory, opts.cacheDir);
  const useKernel = tuning.kernel !== false && caps.cgroup !== null;
  const detached = opts.detached === true;
  if (detached && opts.runDir === undefined) throw new Error('detached guests need a runDir');
  const runDir = opts.runDir ?? null;
  if (runDir !== null) {
    fs.mkdirSync(runDir, { recursive: true });
    fs.rmSync(path.join(runDir, 'exit.json'), { force: true });
  }

  // One name for this guest's cgroups and firewall table (unique, and dated for the stale sweep).
  const cgroupName = `g-${Date.now()}-${randomBytes(4).toString('hex')}`;
  let firewall: GuestFirewall | null = null;
  let firewallError: string | null = null;
  if (useKernel && caps.nftables) {
    // Once per process: remove what guests of killed owners left behind.
    if (!swept) {
      swept = true;
      sweepStaleFirewalls();
    }
    try {
      firewall = await GuestFirewall.create(cgroupName, opts.grants.network, admitted.kind === 'component', systemNameservers());
    } catch (err) {
      firewallError = err instanceof Error ? err.message : String(err);
    }
  }

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
  const releaseKernelResources = async (guestHostFinished = false): Promise<void> => {
    for (const dir of mounted) unmountDiskImage(dir);
    await firewall?.remove({ tableGone: guestHostFinished });
  };

  const boot: GuestBootOptions = {
    modulePath: admitted.modulePath,
    kind: admitted.kind,
    argv: [opts.argv0 ?? path.basename(opts.wasm), ...opts.args],
    env: opts.env,
    dirs: opts.dirs.map((d) => ({ host: path.resolve(d.host), guest: d.guest, readonly: d.readonly === true })),
    config: opts.config.map((c) => ({ guest: c.guest, host: path.resolve(c.host) })),
    grants: opts.grants,
    stdin: opts.stdin === 'inherit',
    stdout: opts.stdout ?? 'inherit',
    stderr: opts.stderr ?? 'inherit',
    runDir,
    detached,
    confine: firewall?.procPath ?? null,
    firewall: firewall === null ? null : { nft: firewall.nft, table: firewall.record.table },
  };
  const optionsPath = runDir !== null ? path.join(runDir, 'options.json') : path.join(os.tmpdir(), `lowcloud-guest-${randomUUID()}.json`);
  fs.writeFileSync(optionsPath, JSON.stringify(boot), { mode: 0o600 });

  const stdio = (t: GuestOptions['stdout']): 'inherit' | 'pipe' | 'ignore' => (t === 'pipe' ? 'pipe' : t === 'inherit' || t === undefined ? (detached ? 'ignore' : 'inherit') : 'ignore');
  const child = spawn(process.execPath, ['--max-old-space-size=64', guestMain(), optionsPath], {
    stdio: [opts.stdin === 'inherit' && !detached ? 'inherit' : 'ignore', stdio(opts.stdout), stdio(opts.stderr), ...(detached ? [] : ['ipc' as const])],
    detached,
    // The guest gets its environment from the grant only; the host process gets nothing either.
    env: {},
  });
  const pid = child.pid;
  if (pid === undefined) {
    await releaseKernelResources();
    throw new Error('could not start the guest host process');
  }
  firewall?.add(pid);

  let cgroup: GuestCgroup | null = null;
  let throttle: CpuThrottle | null = null;
  let watchdog: NodeJS.Timeout | null = null;
  const report = emptyReport();
  const limitBytes = opts.grants.memory === undefined ? undefined : opts.grants.memory + HOST_OVERHEAD_BYTES;
  if (opts.grants.memory !== undefined) {
    report.memory.push({ mechanism: `linear memory maximum rewritten to ${opts.grants.memory} bytes (memory.grow fails past it)`, level: 'runtime' });
    report.memory.push({ mechanism: 'V8 heap capped (worker resourceLimits, --max-old-space-size)', level: 'runtime' });
  }
  if (useKernel && (opts.grants.memory !== undefined || opts.grants.cpu !== undefined)) {
    cgroup = GuestCgroup.create(caps.cgroup as 'v1' | 'v2', cgroupName, {
      ...(limitBytes === undefined ? {} : { memoryBytes: limitBytes }),
      ...(opts.grants.cpu === undefined ? {} : { cpuCores: opts.grants.cpu }),
    });
    cgroup.add(pid);
    if (limitBytes !== undefined) report.memory.unshift({ mechanism: `cgroup ${caps.cgroup} memory limit ${limitBytes} bytes (grant + host overhead)`, level: 'kernel' });
    if (opts.grants.cpu !== undefined) report.cpu.push({ mechanism: `cgroup ${caps.cgroup} CPU quota ${opts.grants.cpu} cores`, level: 'kernel' });
  }
  let violation: GuestExit | null = null;
  if (opts.grants.cpu !== undefined && (cgroup === null || cgroup.dirs.cpu === undefined)) {
    throttle = new CpuThrottle(pid, opts.grants.cpu).start();
    report.cpu.push({ mechanism: `SIGSTOP/SIGCONT duty cycle at ${opts.grants.cpu} cores`, level: 'runtime' });
  }
  if (limitBytes !== undefined && (cgroup === null || cgroup.dirs.memory === undefined)) {
    watchdog = setInterval(() => {
      const rss = rssBytes(pid);
      if (rss !== null && rss > limitBytes) {
        violation = { kind: 'violation', grant: 'memory', detail: `resident memory ${rss} bytes passed ${limitBytes}` };
        child.kill('SIGKILL');
      }
    }, 250);
    watchdog.unref();
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
    const n = opts.grants.network;
    report.network.push({
      mechanism: `wasi:sockets allow-list: listen [${n.listen.join(', ')}], connect [${n.connect.join(', ')}], UDP ${n.udp === true ? 'on granted ports' : 'denied'}, name lookup only for granted hosts`,
      level: 'runtime',
    });
  }
  if (firewall !== null) report.network.unshift({ mechanism: firewall.mechanism, level: 'kernel' });
  else if (firewallError !== null) report.network.push({ mechanism: `kernel layer not used: ${firewallError}`, level: 'advisory' });
  if (runDir !== null) {
    fs.writeFileSync(path.join(runDir, 'guest.json'), JSON.stringify({ pid, start: startTime(pid), report, dirs: boot.dirs, firewall: firewall?.record ?? null, mounts: mounted }));
  }

  let ipcExit: GuestExit | null = null;
  child.on('message', (m: { type?: string; exit?: GuestExit }) => {
    if (m.type === 'exit' && m.exit !== undefined) ipcExit = m.exit;
  });
  let stopRequested = false;
  const exited = new Promise<GuestExit>((resolve) => {
    child.on('exit', async (code, signal) => {
      throttle?.stop();
      if (watchdog !== null) clearInterval(watchdog);
      const oom = cgroup?.oomKilled() === true;
      cgroup?.remove();
      // A guest host that finished (exit record sent or written) has deleted its firewall table.
      await releaseKernelResources(ipcExit !== null || (runDir !== null && readExit(runDir) !== null));
      if (violation !== null) return resolve(violation);
      if (oom) return resolve({ kind: 'violation', grant: 'memory', detail: `killed by the kernel: past the cgroup memory limit of ${limitBytes} bytes` });
      if (ipcExit !== null) return resolve(ipcExit);
      const recorded = runDir === null ? null : readExit(runDir);
      if (recorded !== null) return resolve(recorded);
      if (stopRequested) return resolve({ kind: 'stopped' });
      if (signal !== null) return resolve({ kind: 'signal', signal });
      resolve({ kind: 'exit', code: code ?? 0 });
    });
  });

  const writable = boot.dirs.filter((d) => !d.readonly).map((d) => d.host);
  const handle = {
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
      try {
        child.kill('SIGTERM');
      } catch {
        // already gone
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
    detach(): void {
      throttle?.stop();
      if (watchdog !== null) clearInterval(watchdog);
      child.unref();
      if (child.connected) child.disconnect();
    },
  };
  return handle;
}

function readExit(runDir: string): GuestExit | null {
  try {
    const r = JSON.parse(fs.readFileSync(path.join(runDir, 'exit.json'), 'utf8')) as GuestExit & { at?: string };
    delete r.at;
    return r;
  } catch {
    return null;
  }
}

export function emptyReport(): EnforcementReport {
  return { memory: [] as Enforcement[], cpu: [], disk: [], network: [] };
}

/**
 * Re-attach to a detached guest after the process that started it went away (an agent restart):
 * same pid, no restart. Returns null when the guest host is gone (its exit record, if any, is in
 * runDir/exit.json).
 */
export async function attachGuest(runDir: string): Promise<GuestHandle | null> {
  let info: { pid: number; start: string | null; report: EnforcementReport; dirs: { host: string; readonly: boolean }[]; firewall?: FirewallRecord | null; mounts?: string[] };
  try {
    info = JSON.parse(fs.readFileSync(path.join(runDir, 'guest.json'), 'utf8')) as typeof info;
  } catch {
    return null;
  }
  // A pid alone could have been reused by an unrelated process after a reboot.
  if (startTime(info.pid) === null || startTime(info.pid) !== info.start) return null;
  const pid = info.pid;
  let stopRequested = false;
  const exited = new Promise<GuestExit>((resolve) => {
    const poll = setInterval(() => {
      if (startTime(pid) === info.start) return;
      clearInterval(poll);
      for (const dir of info.mounts ?? []) unmountDiskImage(dir);
      const fw = info.firewall ?? null;
      const exit = readExit(runDir);
      // A guest host that wrote its exit record had deleted its table first.
      const outcome: GuestExit = exit ?? (stopRequested ? { kind: 'stopped' } : { kind: 'signal', signal: 'unknown (exited while detached)' });
      void (fw === null ? Promise.resolve() : GuestFirewall.release(fw, exit !== null)).then(() => resolve(outcome));
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
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
      const t = setTimeout(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }, graceMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
    detach() {},
  };
}
