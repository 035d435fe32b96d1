import type { NetnsMode } from '@lowcloud/sandbox';
import type { Clock } from './clock.js';
import type { LogLimits } from './logs.js';
import type { NetworkLimits } from './network-limits.js';
import type { BackoffPolicy } from './supervisor.js';

/** What an agent runs with, compiled once from its flags (`compileAgentOptions`). */
export interface AgentOptions {
  host: string;
  port: number;
  stateDir: string;
  /**
   * `--cache`: where admitted binaries are kept (memory-capped modules, transpiled components);
   * default `<stateDir>/cache`. Agents of one computer may share one (`lowcloud up`'s do).
   */
  cacheDir?: string;
  /** Public keys (`ed25519:...`) allowed every call (role `write`). */
  trusted: string[];
  /** Public keys allowed the read calls only (role `read`). */
  trustedRead?: string[];
  /** Web page origins allowed to open a WebSocket (a request with any other Origin gets 403). */
  allowedOrigins?: string[];
  /** Where /metrics is served (plain HTTP); null: nowhere. */
  metrics?: { host: string; port: number } | null;
  limits?: Partial<NetworkLimits>;
  /** Plain ws:// (loopback only); otherwise wss:// with a self-signed certificate. */
  insecureLoopback: boolean;
  backoff?: BackoffPolicy;
  clock?: Clock;
  defaultGraceMs?: number;
  logs?: LogLimits;
  /** How often the guests' data directories are walked for `status` (default 10 s). */
  diskIntervalMs?: number;
  /** The largest blob `put-blob` accepts (default 1 GiB). */
  maxBlobBytes?: number;
  /** Free bytes kept on the state filesystem: new uploads and starts are refused below it (default 1 MiB). */
  stateReserveBytes?: number;
  /** Run guests without the kernel wall where it cannot be built (default: refuse them, GRANT_UNAVAILABLE). */
  allowUnwalled?: boolean;
  /** `--netns`: how a network-granted guest host's own network namespace is made, or the host's kept (default veth). */
  netns?: NetnsMode;
  /** `--warm-pool`: warm guest hosts kept for `process` starts (default 2; 0: none). */
  warmPool?: number;
}
