import type { Grants } from '@lowcloud/api';

/**
 * The sandbox's host-side contract: what `lowcloud run` and the node agent use to run one guest.
 * A guest runs in its own child process ("guest host"); this side starts, watches, throttles and
 * stops it.
 */

export type EnforcementLevel = 'kernel' | 'runtime' | 'advisory';

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
}

export interface DirMount {
  /** Directory on the host. */
  host: string;
  /** Absolute or relative path the guest sees. */
  guest: string;
  readonly?: boolean;
  /**
   * For a writable directory with a disk grant: an ext4 image file to loop-mount over it where the
   * kernel layer is available (made on first use; it keeps the data). The agent passes one; `run`
   * does not, since mounting would hide what the directory holds.
   */
  image?: string;
}

export type OutputTarget =
  | 'inherit'
  | 'pipe'
  /** Appended to a size-capped rotating log file written by the guest host process itself. */
  | { file: string; maxBytes: number; keep: number };

export interface GuestOptions {
  /** Path of the .wasm file (preview1 core module or WASI 0.2 command component). */
  wasm: string;
  /** argv[0] the guest sees; defaults to the file's base name. */
  argv0?: string;
  args: string[];
  env: Record<string, string>;
  /** Writable (unless readonly) directories; the disk grant caps bytes added across them. */
  dirs: DirMount[];
  /** Single read-only files at absolute guest paths (a process's config files). */
  config: { guest: string; host: string }[];
  grants: Grants;
  stdin?: 'inherit' | 'ignore';
  stdout?: OutputTarget;
  stderr?: OutputTarget;
  /**
   * Agent mode: the guest host process outlives its parent, keeps its state in `runDir`, and can be
   * re-attached with `attachGuest(runDir)`. Otherwise the guest dies with its parent.
   */
  detached?: boolean;
  /** Required when detached: pid, enforcement report, exit record and control socket live here. */
  runDir?: string;
  /** Where admission results (compiled/transpiled forms) are cached by the binary's sha256. */
  cacheDir?: string;
}

export type GuestExit =
  | { kind: 'exit'; code: number }
  | { kind: 'trap'; message: string }
  /** Killed by a signal we did not attribute to a grant (e.g. an operator's kill -9). */
  | { kind: 'signal'; signal: string }
  /** Stopped because it went past a grant (e.g. memory cgroup OOM kill, RSS watchdog). */
  | { kind: 'violation'; grant: 'memory' | 'cpu' | 'disk' | 'network'; detail: string }
  /** Stopped on request through `stop()`. */
  | { kind: 'stopped' };

export interface GuestUsage {
  /** CPU seconds used since start. */
  cpuSeconds: number;
  /** Resident memory of the guest host process, bytes. */
  memoryBytes: number;
  /** Bytes the guest has added to its writable directories. */
  diskBytes: number;
}

export interface GuestHandle {
  readonly pid: number;
  readonly report: EnforcementReport;
  /** Settles once, when the guest host process is gone. */
  readonly exited: Promise<GuestExit>;
  usage(): Promise<GuestUsage>;
  /** Ask to stop; after `graceMs` (default 5000) kill. Resolves with the exit. */
  stop(graceMs?: number): Promise<GuestExit>;
  /** Stop watching without stopping the guest (agent shutdown; a detached guest keeps running). */
  detach(): void;
}

export interface Capabilities {
  root: boolean;
  cgroup: 'v2' | 'v1' | null;
  /** cgroup controllers we may use, e.g. ['cpu', 'memory']. */
  controllers: string[];
  netns: boolean;
  /** nftables and a cgroup v2 hierarchy: the kernel layer of the network grant. */
  nftables: boolean;
  /** Loop-mounted ext4 images: the kernel layer of the disk grant. */
  diskImages: boolean;
  landlock: number | null;
}
