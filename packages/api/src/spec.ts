import { canonicalJson, sha256Hex } from './digest.js';

/**
 * The normalized, resolved description of one process: what the planner sends in `start` and what
 * an agent stores as desired state. Sizes are bytes, CPU is cores, files are sha256 digests.
 * This is the contract between planner and agent; the YAML file is only one way to produce it.
 */
export type RestartPolicy = 'always' | 'on-failure' | 'never';

/**
 * Where a process's guest runs: `process` (the default) in a guest host of its own behind the full
 * wall; `shared` in a guest host shared with other `shared` processes of the machine, separated from
 * them by the WebAssembly sandbox and the runtime layer (docs/infra-file.md).
 */
export type Isolation = 'process' | 'shared';
export const ISOLATIONS: readonly Isolation[] = ['process', 'shared'];

export interface NetworkGrant {
  /** TCP ports the process may bind and listen on. */
  listen: number[];
  /**
   * Targets the process may connect to, each in its canonical text (`10.0.0.6:5432`, `[fd00::6]:5432`,
   * `10.0.0.0/8:5432`, `db.internal:5432`), sorted and distinct: see `normalizeConnect`, and
   * `parseNetworkGrant` for the typed form a sandbox enforces.
   */
  connect: string[];
  /** UDP is denied unless granted. */
  udp?: boolean;
}

export interface Grants {
  /** Cores, e.g. 0.5. Absent = not limited beyond the machine. */
  cpu?: number;
  /** Bytes of guest linear memory + host overhead. */
  memory?: number;
  /** Bytes the process may add to its private writable directory, which the guest sees at `/data`. Absent = no writable directory. */
  disk?: number;
  /** WebGPU through the `lowcloud:gpu` interface. Absent = a guest that imports it does not start. */
  gpu?: GpuGrant;
  network: NetworkGrant;
}

export interface GpuGrant {
  /** Bytes of GPU buffers the guest may hold at once (the sum of its live buffers). */
  memory: number;
  /** Longest a submission may run before the guest is ended (default 10). */
  submitSeconds?: number;
}

export interface ProcessSpec {
  /** Process name, unique within the infra file. */
  name: string;
  /** sha256 hex of the WebAssembly binary. */
  binary: string;
  args: string[];
  env: Record<string, string>;
  /** Guest path (absolute, e.g. `/etc/kv.toml`) -> sha256 hex of the file's contents. Read-only in the guest. */
  config: Record<string, string>;
  grants: Grants;
  restart: RestartPolicy;
  /**
   * Absent: `process`. Written only when `shared`, so a spec of a process-isolated guest keeps the
   * digest it had before the field existed; a change is a replace (another host), never a
   * replace-config.
   */
  isolation?: Isolation;
  /**
   * true: where the agent cannot build the kernel wall, this guest runs without it (else the start
   * is refused, GRANT_UNAVAILABLE). Written only when true, so the spec of every other process
   * keeps the digest it had before the field existed; a change is a replace.
   */
  allowUnwalled?: true;
}

/** The isolation a spec asks for (absent: `process`). */
export function isolationOf(spec: Pick<ProcessSpec, 'isolation'>): Isolation {
  return spec.isolation ?? 'process';
}

/** Identity of a spec: equal specs have equal digests whatever the key order they came in. */
export function specDigest(spec: ProcessSpec): string {
  return sha256Hex(canonicalJson(spec));
}

/** Each env variable's value as a sha256 digest: what leaves an agent instead of the value. */
export function envDigests(env: Record<string, string>): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(env)) out[k] = sha256Hex(v);
  return out;
}

/** A spec as `status` shows it: everything but env values, which become digests. */
export function publicSpec(spec: ProcessSpec): Omit<ProcessSpec, 'env'> & { envDigests: Record<string, string> } {
  const { env, ...rest } = spec;
  return { ...rest, envDigests: { ...envDigests(env) } };
}
