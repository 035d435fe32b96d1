/**
 * What the sandbox reports about a guest, defined here once because it crosses the wire in
 * `status` and events: how each grant is enforced, how a guest ended, what the machine allows.
 * `@lowcloud/sandbox` produces these values and imports the types from here.
 */

export type Grant = 'memory' | 'cpu' | 'disk' | 'network' | 'gpu';
export const GRANTS: readonly Grant[] = ['memory', 'cpu', 'disk', 'network', 'gpu'];
/** Grants every enforcement report lists (gpu only where the guest has the grant). */
export const REPORTED_GRANTS: readonly Grant[] = ['memory', 'cpu', 'disk', 'network'];

/** kernel: the kernel refuses it; runtime: the guest host refuses it; advisory: reported only. */
export type EnforcementLevel = 'kernel' | 'runtime' | 'advisory';
export const ENFORCEMENT_LEVELS: readonly EnforcementLevel[] = ['kernel', 'runtime', 'advisory'];

export interface Enforcement {
  /** What enforces it, e.g. `cgroup v2 memory.max`, `memory maximum rewritten`, `SIGSTOP/SIGCONT duty cycle`. */
  mechanism: string;
  level: EnforcementLevel;
}

/** Per grant, every layer that enforces it, strongest first. */
export interface EnforcementReport {
  memory: Enforcement[];
  cpu: Enforcement[];
  disk: Enforcement[];
  network: Enforcement[];
  /** Only for a guest with a gpu grant: the adapter, the memory budget, the time budget per submission. */
  gpu?: Enforcement[];
  /**
   * The wall around the guest host process: `kernel` (its own uid, no capabilities, no_new_privs,
   * seccomp, namespaces) or only the `runtime` (JavaScript WASI) layer. Not a grant.
   */
  isolation: Enforcement[];
}

export type ExitKind = 'exit' | 'trap' | 'signal' | 'violation' | 'stopped';

export type GuestExit =
  | { kind: 'exit'; code: number }
  | { kind: 'trap'; message: string }
  /** Killed by a signal we did not attribute to a grant (e.g. an operator's kill -9). */
  | { kind: 'signal'; signal: string }
  /** Stopped because it went past a grant (e.g. memory cgroup OOM kill, RSS watchdog). */
  | { kind: 'violation'; grant: Grant; detail: string }
  /** Stopped on request through `stop()`. */
  | { kind: 'stopped' };

/** What the machine lets the sandbox use (each probed once by trying it). */
export interface Capabilities {
  root: boolean;
  cgroup: 'v2' | 'v1' | null;
  /** cgroup controllers we may use, e.g. ['cpu', 'memory']. */
  controllers: string[];
  /** nftables and a cgroup v2 hierarchy: the kernel layer of the network grant. */
  nftables: boolean;
  /** Loop-mounted ext4 images: the kernel layer of the disk grant. */
  diskImages: boolean;
  /** The kernel wall around each guest host (bubblewrap + setpriv + seccomp), as probed by running it. */
  wall: 'root' | 'userns' | null;
  /** Why a kernel layer is not available, per layer (only for those that are not). */
  unavailable: Record<string, string>;
}
