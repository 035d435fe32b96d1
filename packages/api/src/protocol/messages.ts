import type { WireError } from '../errors.js';
import type { RequestAuth } from '../signing.js';
import type { ProcessSpec } from '../spec.js';
import type { Capabilities, EnforcementReport, GuestExit, Grant } from './report.js';

/**
 * The agent protocol: JSON over one WebSocket. Requests carry an `id` that their replies echo.
 * Every request but `hello` carries `auth`, a signature by a key the agent trusts: `read` keys may
 * make the read calls, `write` keys every call. Defined once here; the agent validates requests
 * and the client validates replies with the schemas in `schema.ts` and `replies.ts`.
 */
export type Request = SingleRequest | { type: 'batch'; id: string; calls: BatchedCall[]; auth?: RequestAuth };

/** Every request but `batch`. */
export type SingleRequest =
  | { type: 'hello'; id: string; challenge: string }
  | { type: 'authenticate'; id: string; auth?: RequestAuth }
  | { type: 'status'; id: string; auth?: RequestAuth }
  | { type: 'start'; id: string; spec: ProcessSpec; auth?: RequestAuth }
  | { type: 'stop'; id: string; process: string; graceMs?: number; auth?: RequestAuth }
  | { type: 'replace-config'; id: string; process: string; config: Record<string, string>; specDigest: string; auth?: RequestAuth }
  | { type: 'blob-status'; id: string; digests: string[]; auth?: RequestAuth }
  // A chunk travels as base64 `data` in a text frame, or as raw bytes after the JSON header of a
  // binary frame (`chunk` then names their length and sha256, which the signature covers).
  | { type: 'put-blob'; id: string; digest: string; size: number; offset: number; data?: string; chunk?: { bytes: number; sha256: string }; auth?: RequestAuth }
  | { type: 'logs'; id: string; process: string; tail?: number; follow?: boolean; auth?: RequestAuth }
  | { type: 'watch'; id: string; auth?: RequestAuth };

/**
 * The calls a `batch` carries: state-changing calls (not put-blob, whose bytes come as binary
 * frames), each with its own `id` and no `auth` of its own. The batch's one signature covers them
 * all (signing.ts, `bodyDigest`); the agent takes them in order, the k-th (from 0) made against the
 * batch's generation + k as if each had come alone, and answers each by its own id. The batch
 * itself is answered at once (`{ calls: n }`) once its signature, key, role, time and nonce pass,
 * or with the error that refuses every call in it. One signature for a window of calls instead of
 * one each: an Ed25519 signature and its check, a nonce and a frame per call.
 */
export const BATCHED_CALLS = ['start', 'stop', 'replace-config'] as const;
export type BatchedCall = WithoutAuth<Extract<SingleRequest, { type: (typeof BATCHED_CALLS)[number] }>>;
type WithoutAuth<T> = T extends unknown ? Omit<T, 'auth'> : never;
/** The most calls one `batch` may carry (an agent's commit group takes up to as many). */
export const MAX_BATCH_CALLS = 1024;

export type RequestType = Request['type'];
export type RequestOf<T extends RequestType> = Extract<Request, { type: T }>;

/** What a trusted key may do: `read` the state, or also `write` (change it). `write` implies `read`. */
export type Role = 'read' | 'write';

/** Calls a `read` key may make. Every other call but `hello` needs `write`. */
export const READ_CALLS: readonly RequestType[] = ['authenticate', 'status', 'blob-status', 'logs', 'watch'];
/** Calls that change the agent's state (signed by a `write` key, recorded in the audit log). */
export const MUTATING: readonly RequestType[] = ['start', 'stop', 'replace-config', 'put-blob'];

/** The role a call needs; `null` for the one anonymous exchange, `hello`. */
export function requiredRole(type: RequestType): Role | null {
  return type === 'hello' ? null : READ_CALLS.includes(type) ? 'read' : 'write';
}

export type ProcessState = 'starting' | 'running' | 'backoff' | 'crash-loop' | 'exited' | 'stopped';

/**
 * A process spec as `status` shows it: env values never leave the agent. `envDigests` maps each
 * variable to the sha256 (hex) of its value, so a planner can tell which ones differ from a file.
 */
export type PublicSpec = Omit<ProcessSpec, 'env'> & { envDigests: Record<string, string> };

/**
 * CPU and memory are read at the call; disk use comes from the agent's background measurement:
 * `diskMeasuredAt` says when (null: not measured yet, diskBytes 0), `diskMeasuring` that a walk of
 * this process's data directory is under way now.
 */
export interface ProcessUsage {
  cpuSeconds: number;
  memoryBytes: number;
  /**
   * Whose CPU and memory these are: `host`, the guest host process's (a `process` guest is alone in
   * it: its resident memory and CPU); `guest`, the guest's own (a `shared` guest: its linear memory,
   * and its CPU as its host measures it between suspensions). A shared guest whose host did not
   * answer in time shows `host`: the figures of the host all its guests share. Absent (an agent from
   * before it): `host`.
   */
  level?: { memory: 'host' | 'guest'; cpu: 'host' | 'guest' };
  diskBytes: number;
  diskMeasuredAt: string | null;
  diskMeasuring: boolean;
}

export interface ProcessStatus {
  name: string;
  spec: PublicSpec;
  /** Digest of the whole spec, env values included (equal specs, equal digests). */
  specDigest: string;
  state: ProcessState;
  pid: number | null;
  restarts: number;
  lastExit: GuestExit | null;
  enforcement: EnforcementReport | null;
  usage: ProcessUsage | null;
  /** When the next restart is due (backoff / crash-loop), ISO time. */
  nextRestart: string | null;
  /**
   * The guest host a running guest is in (its id; `pid` is that host's pid): a `process` guest's
   * own, a `shared` guest's shared with other guests. Null when not running; absent from agents
   * before it.
   */
  host?: string | null;
}

export interface AgentStatus {
  agent: string;
  generation: number;
  startedAt: string;
  capabilities: Capabilities;
  processes: ProcessStatus[];
  /** The filesystem of the agent's state directory (absent from agents before it). */
  stateDisk?: StateDiskStatus;
  /** Whether the agent can append to its audit log (absent from agents before it). */
  audit?: AuditLogStatus;
  /** What the agent mended when it started: a broken state file, a missing audit line, stray guests. */
  recovered?: string[];
}

export interface StateDiskStatus {
  dir: string;
  freeBytes: number;
  totalBytes: number;
  /** Below this much free space the agent refuses new uploads and starts (`--state-reserve`). */
  reserveBytes: number;
}

export interface AuditLogStatus {
  /** False while appends fail: every state-changing call is refused until one succeeds again. */
  writable: boolean;
  entries: number;
  failures: number;
  error?: string;
  /** Why the current segment began (the log before it did not verify, or was deleted), and what to do. */
  notice?: string;
}

export type AgentEventKind = 'started' | 'exited' | 'died' | 'restarted' | 'grant-violated' | 'crash-loop' | 'stopped';

export interface AgentEvent {
  kind: AgentEventKind;
  process: string;
  at: string;
  pid?: number;
  /** grant-violated: which grant the process went past. */
  grant?: Grant;
  /** Human-readable detail (the exit, the violation, the backoff). */
  detail?: string;
}

/** The result of each call, by request type. */
export interface Results {
  authenticate: { key: string; role: Role };
  status: AgentStatus;
  start: { changed: boolean; pid?: number | null };
  stop: { changed: boolean };
  'replace-config': { changed: boolean; pid?: number | null };
  'blob-status': { present: string[]; partial: Record<string, number> };
  'put-blob': { complete: boolean };
  logs: Record<string, never>;
  watch: Record<string, never>;
  /** The calls the batch carried, each answered by its own id after this. */
  batch: { calls: number };
}
export type ResultType = keyof Results;

/**
 * How the agent bound its hello proof to this connection: `tls-exporter` is RFC 9266 keying
 * material of the TLS session; `none` for plain ws:// on loopback (no TLS: nothing to bind to).
 */
export type ChannelBinding = 'tls-exporter' | 'none';

export type Reply =
  // `batch`: the most calls this agent takes in one `batch` request; absent from agents before
  // batches (a client then sends each call alone).
  | { type: 'hello'; id: string; agent: string; generation: number; proof: string; binding: ChannelBinding; batch?: number }
  | { type: 'result'; id: string; generation: number; result: Results[ResultType] }
  | { type: 'error'; id: string | null; error: WireError }
  | { type: 'event'; id: string; event: AgentEvent }
  | { type: 'log'; id: string; line: string };
