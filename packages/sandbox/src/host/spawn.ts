import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseNetworkGrant } from '@lowcloud/api';
import type { EnforcementReport, GuestExit, GuestHandle, GuestOptions, GuestUsage, OutputTarget } from '../types.js';
import { isOutput } from '../common/protocol.js';
import { admit } from './admission.js';
import { memoryLimits } from './grants/index.js';
import { Guest } from './guest.js';
import { GuestHost, PreparedHost, type HostTuning } from './guest-host.js';
import { ProcessLink } from './process-link.js';
import { makeCtl, SharedHost, SharedLink, sharedRefusal, writeExit, type SharedGuest } from './shared-host.js';
import { takeWarmHost, warmRefusal } from './warm-pool.js';

export type SpawnTuning = HostTuning;

/**
 * Run one guest in a guest host of its own: admit its binary, set up every grant's layers (kernel
 * objects before any guest code), make the guest's files, start the guest host, and hand back one
 * handle for the guest.
 */
export async function spawnGuest(opts: GuestOptions, tuning: SpawnTuning = {}): Promise<GuestHandle & { child: ChildProcess }> {
  // The grant's targets are parsed here, once, before anything is made: both layers get typed values.
  const network = parseNetworkGrant(opts.grants.network);
  const detached = opts.detached === true;
  // Programmer errors of the caller (the agent always passes good ones): not user-facing messages.
  // An output target a guest host would refuse is refused here, before anything is made (a shared
  // host dropped such a start, and the caller waited 30 s for a confirmation that never came).
  for (const k of ['stdout', 'stderr'] as const) {
    if (opts[k] !== undefined && !isOutput(opts[k])) throw new TypeError(`spawnGuest: ${k} must be 'inherit', 'pipe' or { file, maxBytes: an integer >= 1, keep: an integer 0-1000 }`);
  }
  if (detached && opts.runDir === undefined) throw new TypeError('detached guests need a runDir');
  const runDir = opts.runDir ?? null;
  // A `process` guest whose uid has a warm host running takes it (warm-pool.ts); one that cannot
  // (a component, a grant it does not have, a binary that does not admit) leaves it to end: the uid
  // is this guest's now. Out of the pool before anything can fail, so none is left idle.
  const warm = opts.isolation !== 'shared' && opts.uid !== undefined ? takeWarmHost(opts.uid, tuning) : null;
  let admitted: Awaited<ReturnType<typeof admit>>;
  try {
    admitted = await admit(opts.wasm, opts.grants.memory, opts.cacheDir);
  } catch (err) {
    warm?.closeWarm();
    throw err;
  }
  const limits = memoryLimits(opts.grants.memory);
  const refusal = opts.isolation === 'shared' ? sharedRefusal(opts, admitted.kind) : null;
  // A shared guest's record is a line of its host's journal: no run directory made for it (a mkdir a start).
  if (opts.isolation === 'shared' && refusal === null) return spawnShared(opts, admitted, network, tuning);
  if (warm !== null) {
    if (warmRefusal(opts, admitted.kind) === null && warm.claim(opts, tuning)) return spawnShared(opts, admitted, network, tuning, warm);
    warm.closeWarm();
  }
  if (runDir !== null) fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const prepared = await PreparedHost.create(opts, { kind: admitted.kind, network }, tuning);
  try {
    const { uid } = prepared.wall;
    const mine = process.getuid?.() ?? 0;
    // A detached guest (the agent's) gets control FIFOs in its run directory: a replace-config
    // then starts it again in this host (`restartProcess`). Not with a gpu grant (its device
    // thread ends only with the process).
    const ctl = detached && runDir !== null && opts.grants.gpu === undefined ? await makeCtl(path.join(runDir, 'ctl'), uid) : null;
    const guest = Guest.create(opts, admitted, {
      id: `${prepared.name}/0`,
      uid: uid === mine ? null : uid,
      runDir,
      workerHeapMb: limits.workerHeapMb,
      network,
      layers: prepared.layers,
      names: prepared.names,
      ...(ctl === null ? {} : { restartKey: restartKey(opts, admitted) }),
    });
    const host = await prepared.launch([guest], {
      detached,
      runDir,
      hostHeapMb: limits.hostHeapMb,
      stdin: opts.stdin === 'inherit',
      stdout: opts.stdout ?? 'inherit',
      stderr: opts.stderr ?? 'inherit',
      ...(ctl === null ? {} : { ctl }),
    });
    // Asked for a shared host and given one of its own: the report says why (it is only stronger).
    if (refusal !== null) guest.report.isolation.push({ mechanism: `isolation shared asked; runs in a guest host of its own: ${refusal}`, level: 'runtime' });
    return { ...handle(host, guest, tuning), child: host.child as ChildProcess };
  } catch (err) {
    await prepared.release();
    throw err;
  }
}

/**
 * Re-attach to a detached guest after the process that started it went away (an agent restart):
 * same pid, no restart, and every runtime layer its report claims running again. Returns null
 * when the guest host is gone (its exit record, if any, is in runDir/exit.json).
 */
export async function attachGuest(runDir: string, tuning: SpawnTuning = {}, output?: { stdout: OutputTarget; stderr: OutputTarget }): Promise<GuestHandle | null> {
  const host = GuestHost.attach(runDir, (r) => Guest.restore(r));
  const guest = host?.guests[0];
  if (host === null || guest === undefined) return null;
  const link = host.ctl === null ? null : SharedLink.to(host.ctl);
  if (link === null) return handle(host, guest, tuning);
  // A shared guest's output comes over its host's FIFOs now: to where it went before (a process
  // guest's output FIFOs are in its record, and its host side reads them again by itself).
  if (output !== undefined) link.follow(guest.id, output.stdout, output.stderr);
  return attachedShared(host, guest, link);
}

/**
 * A shared guest re-attached through its host's control FIFOs: its own exit, stop and usage, as
 * when it was started; what the host cannot say (it ended unseen) comes from the process end.
 */
function attachedShared(host: GuestHost, guest: Guest, link: SharedLink): GuestHandle {
  let stopRequested = false;
  const exited = Promise.race([
    link.exitOf(guest.id).then((e) => e ?? guest.recordedExit() ?? { kind: 'signal' as const, signal: 'unknown (exited while detached)' }),
    host.exitOf(guest),
  ]).then((e) => (stopRequested && e.kind === 'signal' ? { kind: 'stopped' as const } : e));
  void exited.then((e) => {
    const file = guest.exitRecord;
    if (file !== null) writeExit(path.dirname(file), e);
  });
  return {
    pid: host.pid,
    host: host.id,
    report: guest.report,
    exited,
    ...(guest.tag === null ? {} : { tag: guest.tag }),
    usage: async () => sharedUsage(await link.usage(guest.id), host),
    async stop(graceMs = 5000): Promise<GuestExit> {
      stopRequested = true;
      link.send({ type: 'stop', guest: guest.id });
      const timer = setTimeout(() => void host.stop(0), graceMs);
      const e = await exited;
      clearTimeout(timer);
      return e;
    },
    detach: () => host.detach(),
  };
}

/** A guest in a shared guest host (host/shared-host.ts): its group's host with room, or a new one. */
async function spawnShared(
  opts: GuestOptions,
  admitted: Awaited<ReturnType<typeof admit>>,
  network: ReturnType<typeof parseNetworkGrant>,
  tuning: SpawnTuning,
  /** A host with a slot already reserved for this guest (restart in place). */
  into: SharedHost | null = null,
): Promise<GuestHandle & { child: ChildProcess }> {
  // Read here, outside the wall (before a slot is taken: a missing file fails the start alone); the
  // shared host serves them from memory and has no file bound.
  let config: { guest: string; content: string }[];
  try {
    config = opts.config.map((c) => ({ guest: c.guest, content: Buffer.from('host' in c ? fs.readFileSync(path.resolve(c.host)) : c.content).toString('base64') }));
  } catch (err) {
    into?.release(); // the slot kept for this guest (a taken warm host ends with it)
    throw err;
  }
  const host = into ?? (await SharedHost.for(opts, tuning));
  const guest = host.add(opts, admitted, {
    modulePath: admitted.modulePath,
    kind: 'module',
    argv: [opts.argv0 ?? path.basename(opts.wasm), ...opts.args],
    env: opts.env,
    dirs: [],
    config,
    disk: null,
    network,
    workerHeapMb: null,
    stdin: false,
    stdout: opts.stdout ?? 'inherit',
    stderr: opts.stderr ?? 'inherit',
    exitRecord: null,
  });
  // Answered once the host has the guest, not once its `add` is queued: a starter killed right
  // after (an agent SIGKILLed after answering a start) must not lose an add the host never read.
  await guest.started;
  return { ...sharedHandle(guest, opts, tuning), child: host.host.child as ChildProcess };
}

function sharedHandle(guest: SharedGuest, opts: GuestOptions, tuning: SpawnTuning): GuestHandle {
  const { host } = guest;
  return {
    pid: host.pid,
    host: host.id,
    report: guest.report,
    exited: guest.exited,
    usage: async () => sharedUsage(await host.usage(guest), host.host),
    stop: (graceMs = 5000) => host.stop(guest, graceMs),
    detach: () => host.detach(),
    // In place: the one guest stops and its successor joins a host of its group (the same one while
    // it has room); a `process` guest in a warm host it took, that host again (same uid and grants).
    async restart(next: GuestOptions): Promise<GuestHandle> {
      const opts2 = { ...next, isolation: next.isolation ?? opts.isolation };
      // Its slot is kept across the stop, so the host stays up for the successor.
      const into = (opts2.isolation ?? 'process') === host.isolation && host.reserveFor(opts2, tuning) ? host : null;
      await host.stop(guest, 5000);
      // A module that does not admit is not lost: spawnGuest below admits it again and throws that error.
      const admitted = into === null ? null : await admit(opts2.wasm, opts2.grants.memory, opts2.cacheDir).catch(() => null);
      const fits = admitted !== null && (host.isolation === 'shared' ? sharedRefusal(opts2, admitted.kind) : warmRefusal(opts2, admitted.kind)) === null;
      if (into !== null && admitted !== null && fits && !into.ended) return spawnShared(opts2, admitted, parseNetworkGrant(opts2.grants.network), tuning, into);
      into?.release();
      return spawnGuest(opts2, tuning);
    },
  };
}

/** A shared guest's usage: its own where its host answered, else the host's (the level says which). */
function sharedUsage(own: { memoryBytes: number; cpuSeconds: number | null } | null, host: GuestHost): GuestUsage {
  if (own === null) return { ...host.usage(), diskBytes: 0, level: { memory: 'host', cpu: 'host' } };
  return { memoryBytes: own.memoryBytes, cpuSeconds: own.cpuSeconds ?? host.usage().cpuSeconds, diskBytes: 0, level: { memory: 'guest', cpu: own.cpuSeconds === null ? 'host' : 'guest' } };
}

/** The handle of one guest: its exit, report and disk from the guest; pid, CPU, memory, stop from its host. */
function handle(host: GuestHost, guest: Guest, tuning: SpawnTuning): GuestHandle {
  // Its end: the host's, or its host's answer to a restart in place (it was stopped, the host runs on).
  let replaced: (e: GuestExit) => void = () => undefined;
  const exited = Promise.race([host.exitOf(guest), new Promise<GuestExit>((r) => (replaced = r))]);
  const stop = async (graceMs = 5000): Promise<GuestExit> => {
    await host.stop(graceMs);
    return exited;
  };
  const ctl = host.processCtl;
  if (ctl !== null) void host.whenEnded().then(() => ProcessLink.close(ctl));
  return {
    pid: host.pid,
    host: host.id,
    report: guest.report,
    exited,
    ...(guest.tag === null ? {} : { tag: guest.tag }),
    async usage(): Promise<GuestUsage> {
      return { ...host.usage(), diskBytes: guest.diskBytes() };
    },
    stop,
    detach: () => host.detach(),
    ...(ctl === null || guest.restartKey === null ? {} : { restart: (next: GuestOptions) => restartProcess(host, guest, next, tuning, { stop, replaced }) }),
  };
}

/** How long a process guest host has to say its guest runs again after a restart in place. */
const RESTART_CONFIRM_MS = 5000;

/**
 * What must stay the same for a `process` guest to be started again in its own host: the binary
 * (as admitted), its arguments, grants, directories, uid, output and wall. A replace-config
 * changes only config files (and the environment its sealed values open into).
 */
function restartKey(opts: GuestOptions, admitted: { modulePath: string; kind: string }): string {
  return JSON.stringify([admitted.modulePath, admitted.kind, opts.argv0 ?? path.basename(opts.wasm), opts.args, opts.grants, opts.dirs, opts.uid ?? null, opts.stdout ?? 'inherit', opts.stderr ?? 'inherit', opts.stdin ?? null, opts.allowUnwalled === true, opts.isolation ?? 'process', opts.detached === true]);
}

/**
 * A `process` guest started again with `next` in the host it runs in (its wall, cgroups and
 * Node.js stay; its thread runs the new boot, or a new thread does: guest/main.ts), where only what
 * `restartKey` leaves out changed and the host answers in time; otherwise it is stopped and
 * started afresh. The new config files go as bytes (the wall binds only the first ones).
 */
async function restartProcess(host: GuestHost, guest: Guest, next: GuestOptions, tuning: SpawnTuning, old: { stop: (graceMs?: number) => Promise<GuestExit>; replaced: (e: GuestExit) => void }): Promise<GuestHandle> {
  // A binary that does not admit is not lost: the fresh start below admits it again and throws that error to the caller.
  const admitted = await admit(next.wasm, next.grants.memory, next.cacheDir).catch(() => null);
  const runDir = guest.exitRecord === null ? null : path.dirname(guest.exitRecord);
  const link = admitted === null || runDir === null || host.processCtl === null || restartKey(next, admitted) !== guest.restartKey ? null : ProcessLink.to(host.processCtl);
  if (link !== null && admitted !== null && runDir !== null) {
    const successor = Guest.create(next, admitted, {
      id: `${host.id}/${randomBytes(4).toString('hex')}`,
      uid: null, // its directories are its uid's already
      runDir,
      workerHeapMb: memoryLimits(next.grants.memory).workerHeapMb,
      network: parseNetworkGrant(next.grants.network),
      layers: host.layerList,
      names: [],
      restartKey: guest.restartKey as string,
      report: guest.report as EnforcementReport,
    });
    const boot = successor.boot as NonNullable<Guest['boot']>;
    const inline = { ...boot, config: boot.config.map((c) => ('host' in c ? { guest: c.guest, content: fs.readFileSync(c.host).toString('base64') } : c)) };
    if (await link.restart(inline, RESTART_CONFIRM_MS)) {
      old.replaced(link.exitOf(guest.id) ?? { kind: 'stopped' });
      // What a re-attaching agent reads: the guest that runs now, with its tag.
      host.save(path.join(runDir, 'guest.json'), host.layerList, [successor.record]);
      return handle(host, successor, tuning);
    }
  }
  await old.stop(5000);
  return spawnGuest(next, tuning);
}
