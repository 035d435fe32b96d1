import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { parseNetworkGrant } from '@lowcloud/api';
import type { GuestExit, GuestHandle, GuestOptions, GuestUsage } from '../types.js';
import { admit } from './admission.js';
import { memoryLimits } from './grants/index.js';
import { Guest } from './guest.js';
import { GuestHost, PreparedHost, type HostTuning } from './guest-host.js';

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
  // A programmer error of the caller (the agent always passes one): not a user-facing message.
  if (detached && opts.runDir === undefined) throw new TypeError('detached guests need a runDir');
  const runDir = opts.runDir ?? null;
  if (runDir !== null) fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const admitted = await admit(opts.wasm, opts.grants.memory, opts.cacheDir);
  const limits = memoryLimits(opts.grants.memory);
  const prepared = await PreparedHost.create(opts, { kind: admitted.kind, network }, tuning);
  try {
    const { uid } = prepared.wall;
    const mine = process.getuid?.() ?? 0;
    const guest = Guest.create(opts, admitted, {
      id: `${prepared.name}/0`,
      uid: uid === mine ? null : uid,
      runDir,
      workerHeapMb: limits.workerHeapMb,
      network,
      layers: prepared.layers,
      names: prepared.names,
    });
    const host = await prepared.launch([guest], {
      detached,
      runDir,
      hostHeapMb: limits.hostHeapMb,
      stdin: opts.stdin === 'inherit',
      stdout: opts.stdout ?? 'inherit',
      stderr: opts.stderr ?? 'inherit',
    });
    return { ...handle(host, guest), child: host.child as ChildProcess };
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
export async function attachGuest(runDir: string): Promise<GuestHandle | null> {
  const host = GuestHost.attach(runDir, (r) => Guest.restore(r));
  const guest = host?.guests[0];
  return host === null || guest === undefined ? null : handle(host, guest);
}

/** The handle of one guest: its exit, report and disk from the guest; pid, CPU, memory, stop from its host. */
function handle(host: GuestHost, guest: Guest): GuestHandle {
  const exited = host.exitOf(guest);
  return {
    pid: host.pid,
    report: guest.report,
    exited,
    async usage(): Promise<GuestUsage> {
      return { ...host.usage(), diskBytes: guest.diskBytes() };
    },
    async stop(graceMs = 5000): Promise<GuestExit> {
      await host.stop(graceMs);
      return exited;
    },
    detach: () => host.detach(),
  };
}
