/** The infrastructure file as written (YAML), before units are parsed and files are hashed. */
export interface InfraFile {
  version: 1;
  machines: Record<string, MachineEntry>;
  processes?: Record<string, ProcessEntry>;
}

export interface MachineEntry {
  /** `ws://host:port`, `wss://host:port`, or `local` for an agent `lowcloud up` starts on this machine. */
  agent: string;
  /** How other machines reach its processes (an IP address or host name); default: the host of `agent`, 127.0.0.1 for `local`. */
  address?: string;
  /** `ed25519:` + base64 of the agent's raw 32-byte public key; optional only for `local`. */
  key?: string;
  region?: string;
  capacity?: CapacityEntry;
}

export interface CapacityEntry {
  cpu?: number;
  memory?: string;
  disk?: string;
  gpu?: { memory: string };
}

export interface ProcessEntry {
  machine: string;
  /** Path of the .wasm file, relative to the infra file. */
  binary: string;
  args?: string[];
  env?: Record<string, string>;
  /** Guest path (absolute) -> file path relative to the infra file. Read-only in the guest. */
  config?: Record<string, string>;
  grants?: GrantsEntry;
  restart?: 'always' | 'on-failure' | 'never';
  /** `process` (default): a guest host of its own; `shared`: a guest host shared with other `shared` processes. */
  isolation?: 'process' | 'shared';
  /** true: where the agent cannot build the kernel wall, this process runs without it instead of being refused. */
  allowUnwalled?: boolean;
}

export interface GrantsEntry {
  cpu?: number;
  memory?: string;
  disk?: string;
  gpu?: GpuEntry;
  network?: NetworkEntry;
}

export interface GpuEntry {
  memory: string;
  submitSeconds?: number;
}

export interface NetworkEntry {
  listen?: number[];
  connect?: string[];
  udp?: boolean;
}
