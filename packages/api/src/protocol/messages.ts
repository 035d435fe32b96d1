import type { WireError } from '../errors.js';
import type { RequestAuth } from '../signing.js';
import type { ProcessSpec } from '../spec.js';

/**
 * The agent protocol: JSON over one WebSocket. Requests carry an `id` that their replies echo.
 * Mutating requests (start, stop, replace-config, put-blob) carry `auth`, a signature by a key the
 * agent trusts. Defined once here; both the agent and the client validate with these schemas.
 */
export type Request =
  | { type: 'hello'; id: string; challenge: string }
  | { type: 'status'; id: string }
  | { type: 'start'; id: string; spec: ProcessSpec; auth?: RequestAuth }
  | { type: 'stop'; id: string; process: string; graceMs?: number; auth?: RequestAuth }
  | { type: 'replace-config'; id: string; process: string; config: Record<string, string>; specDigest: string; auth?: RequestAuth }
  | { type: 'blob-status'; id: string; digests: string[] }
  | { type: 'put-blob'; id: string; digest: string; size: number; offset: number; data: string; auth?: RequestAuth }
  | { type: 'logs'; id: string; process: string; tail?: number; follow?: boolean }
  | { type: 'watch'; id: string };

export type RequestType = Request['type'];
export const MUTATING: readonly RequestType[] = ['start', 'stop', 'replace-config', 'put-blob'];

export type ProcessState = 'starting' | 'running' | 'backoff' | 'crash-loop' | 'exited' | 'stopped';

export interface ProcessStatus {
  name: string;
  spec: ProcessSpec;
  specDigest: string;
  state: ProcessState;
  pid: number | null;
  restarts: number;
  lastExit: Record<string, unknown> | null;
  enforcement: Record<string, { mechanism: string; level: string }[]> | null;
  /**
   * CPU and memory are read at the call; disk use comes from the agent's background measurement:
   * `diskMeasuredAt` says when (null: not measured yet, diskBytes 0), `diskMeasuring` that a walk of
   * this process's data directory is under way now.
   */
  usage: { cpuSeconds: number; memoryBytes: number; diskBytes: number; diskMeasuredAt: string | null; diskMeasuring: boolean } | null;
  /** When the next restart is due (backoff / crash-loop), ISO time. */
  nextRestart: string | null;
}

export interface AgentStatus {
  agent: string;
  generation: number;
  startedAt: string;
  capabilities: Record<string, unknown>;
  processes: ProcessStatus[];
}

export type AgentEvent = {
  kind: 'started' | 'exited' | 'died' | 'restarted' | 'grant-violated' | 'crash-loop' | 'stopped';
  process: string;
  at: string;
  pid?: number;
  detail?: string;
};

export type Reply =
  | { type: 'hello'; id: string; agent: string; generation: number; proof: string; binding: string }
  | { type: 'result'; id: string; generation: number; result: Record<string, unknown> }
  | { type: 'error'; id: string | null; error: WireError }
  | { type: 'event'; id: string; event: AgentEvent }
  | { type: 'log'; id: string; line: string };
