import type { Capabilities, Enforcement, Grant, GuestExit, NetworkAccess } from '@lowcloud/api';
import type { GuestOptions } from '../../types.js';
import type { BinaryKind } from '../../wasm/module.js';
import type { CgroupLimits, GuestCgroup } from '../cgroup.js';
import type { Wall, WallLimits, WallSpec } from '../isolation.js';
import type { NetnsMode } from '../netns.js';

/**
 * One module per grant (and one for the wall around the guest host): each turns its typed grant
 * into everything it needs - the kernel limits it asks of the guest host's cgroup, what it sets up
 * before any guest code runs, what it records for a re-attaching host, how it is released, how a
 * violation of it is recognised, and its lines of the enforcement report. Adding a grant means
 * adding a module to grants/index.ts, not editing lists elsewhere.
 */
export interface GrantModule<R = unknown> {
  readonly name: Grant | 'isolation';
  /** The limits this grant asks of the guest host's cgroup (made once, for every grant). */
  cgroupLimits?(options: GuestOptions): CgroupLimits;
  /** Before any guest code runs: kernel objects and the report lines. Throws when the guest must not run. */
  setUp(ctx: SetUpContext): Promise<GrantLayers>;
  /** The layers again from what `setUp` recorded, after the host that made them went away. */
  reattach(record: R | null): GrantLayers;
}

/** What a module is given to set up its layers around one guest host. */
export interface SetUpContext {
  readonly options: GuestOptions;
  readonly kind: BinaryKind;
  /** The network grant, its connect targets parsed once (by spawnGuest). */
  readonly network: NetworkAccess;
  /** Kernel layers may be used (root, and not turned off with `--no-kernel`). */
  readonly kernel: boolean;
  /** The wall may be used (not turned off for this guest). */
  readonly wall: boolean;
  /** A guest that cannot be walled must not start (the agent, unless --allow-unwalled). */
  readonly requireWall: boolean;
  /** A network-granted guest host's namespace: its own over a veth pair or through pasta, or the host's (HostTuning.netns). */
  readonly netns: NetnsMode;
  readonly caps: Capabilities;
  /** Unique name of the guest host: its cgroup directory, its nftables table. */
  readonly name: string;
  /** The guest host's cgroup, made from every module's `cgroupLimits`; null when none. */
  readonly cgroup: GuestCgroup | null;
}

/** How the guest host process ended, as far as the host can tell. */
export interface ProcessEvidence {
  /** The kernel OOM-killed a process of its memory cgroup. */
  oom: boolean;
}

/** One grant's layers around one guest host: made by `setUp`, or restored by `reattach`. */
export interface GrantLayers {
  /** Its lines of the enforcement report, strongest first (empty when restored: the report is recorded). */
  readonly report: Enforcement[];
  /** What a re-attaching host needs to restore and release these layers (JSON, in guest.json). */
  readonly record: object | null;
  /** Cgroup directories the launcher puts the guest host in before it runs anything. */
  readonly cgroupDirs?: readonly string[];
  /** The nftables table the launcher deletes as the guest host ends. */
  readonly table?: { nft: string; table: string };
  /** The wall around the guest host, and the uid it runs as (the isolation module). */
  readonly wall?: { wall: Wall | null; uid: number; devices: string[]; network?: WallSpec['network']; limits?: WallLimits; userland?: boolean };
  /** Runtime layers acting on the guest host process, from when its pid is known. */
  watch?(pid: number, violated: (v: GuestExit) => void): void;
  /** Stop them: the guest host ended, is being stopped, or is no longer watched (detach). */
  unwatch?(why: 'ended' | 'stopping' | 'detached'): void;
  /** Remove kernel objects. `launcherCleaned`: the launcher removed what it could as it ended. */
  release?(launcherCleaned: boolean): Promise<void>;
  /** A violation of this grant, from what the layers saw and how the process ended. */
  violation?(end: ProcessEvidence): GuestExit | null;
}
