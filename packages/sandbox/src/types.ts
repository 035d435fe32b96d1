import type { EnforcementReport, GuestExit, Grants } from '@lowcloud/api';

// Defined once in @lowcloud/api (they cross the wire in status); re-exported for the sandbox's users.
export type { Capabilities, Enforcement, EnforcementLevel, EnforcementReport, ExitKind, Grant, GuestExit } from '@lowcloud/api';

/**
 * The sandbox's host-side contract: what `lowcloud run` and the node agent use to run one guest.
 * A guest runs in its own child process ("guest host"); this side starts, watches, throttles and
 * stops it.
 */

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
  /** Appended to a size-capped rotating log file, written outside the wall by the process that started the guest (maxBytes >= 1, keep 0-1000). */
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
  /**
   * Single read-only files at absolute guest paths (a process's config files): a host file, or
   * `content` the guest host keeps in memory only (an opened secret: it travels on the boot pipe).
   */
  config: ({ guest: string; host: string } | { guest: string; content: Uint8Array })[];
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
  /**
   * The caller's word for what this guest runs (the agent: its spec digest), kept in the guest's
   * record in `runDir` and handed back by `attachGuest` (`GuestHandle.tag`). A shared guest's
   * record is written before it runs, so the agent writes no file of its own for it.
   */
  tag?: string;
  /**
   * As root: the guest host's own uid (and gid) inside its wall, distinct per guest (the agent
   * allocates and keeps one per process). Without it `lowcloud run` keeps the caller's uid.
   */
  uid?: number;
  /** Where admission results (compiled/transpiled forms) are cached by the binary's sha256. */
  cacheDir?: string;
  /**
   * `process` (default): the guest has a guest host process and a wall of its own, exactly as
   * strong as before. `shared`: the guest runs in a guest host shared with other shared guests
   * started by this process (grouped by uid-less compatibility: same detached mode and kernel
   * layers; see docs/architecture.md); guests of one host are separated by the WebAssembly sandbox
   * and the runtime layer, the host by the wall.
   */
  isolation?: GuestIsolation;
  /**
   * This guest's own opt-in (the infra file's `allowUnwalled`): where the wall cannot be built it
   * runs without it although the caller requires the wall (`requireWall`); its report says by whose
   * choice. Guests with and without it never share a host.
   */
  allowUnwalled?: boolean;
}

export type GuestIsolation = 'process' | 'shared';

export interface GuestUsage {
  /** CPU seconds used since start (for a shared guest: its host's, unless `level` says `guest`). */
  cpuSeconds: number;
  /** Resident memory of the guest host process, bytes (a shared guest: its linear memory). */
  memoryBytes: number;
  /**
   * Whose figures these are: `host` (the guest host process; a process guest is alone in it) or
   * `guest` (the guest's own: linear memory, and CPU where its host measures it per guest).
   * Absent means `host`.
   */
  level?: { memory: 'host' | 'guest'; cpu: 'host' | 'guest' };
  /** Bytes the guest has added to its writable directories. */
  diskBytes: number;
}

export interface GuestHandle {
  /** Pid of the guest host process (shared with the other guests of a shared host). */
  readonly pid: number;
  /** Id of the guest host the guest runs in (a process guest's own host id). */
  readonly host: string;
  readonly report: EnforcementReport;
  /** Settles once, when the guest host process is gone. */
  readonly exited: Promise<GuestExit>;
  /** A re-attached guest's `GuestOptions.tag`, where it was started with one. */
  readonly tag?: string;
  usage(): Promise<GuestUsage>;
  /** Ask to stop; after `graceMs` (default 5000) kill. Resolves with the exit. */
  stop(graceMs?: number): Promise<GuestExit>;
  /** Stop watching without stopping the guest (agent shutdown; a detached guest keeps running). */
  detach(): void;
  /**
   * Replace the guest's options in place: stop this one guest and start it again with `opts`, in
   * the same guest host where isolation allows (shared guests), otherwise a fresh start. Resolves
   * with the new guest's handle once it runs; this handle's `exited` settles as a stop.
   */
  restart?(opts: GuestOptions): Promise<GuestHandle>;
}
