import type { JSONSchemaType } from 'ajv';
import { CONNECT_PATTERN } from '../grants/network.js';
import type { CapacityEntry, GpuEntry, GrantsEntry, InfraFile, MachineEntry, NetworkEntry, ProcessEntry } from './types.js';

/** `64MiB`, `1GiB`, `500KB`, `100B`. Parsed by `parseSize`, which gives the precise error. */
export const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)?\\s*([KMGT]i?B|B)$';
const NAME_PATTERN = '^[a-z0-9]([a-z0-9._-]{0,62})$';
const AGENT_PATTERN = '^(local|wss?://[^\\s/]+(:[0-9]+)?/?)$';
const KEY_PATTERN = '^ed25519:[A-Za-z0-9+/]{43}=$';

const size = (description: string) => ({ type: 'string', pattern: SIZE_PATTERN, description, nullable: true }) as const;

const capacity: JSONSchemaType<CapacityEntry> = {
  type: 'object',
  description: 'What the machine can give to its processes; the planner refuses grants that do not fit.',
  additionalProperties: false,
  properties: {
    cpu: { type: 'number', exclusiveMinimum: 0, description: 'Cores.', nullable: true },
    memory: size('Bytes, e.g. 32GiB.'),
    disk: size('Bytes, e.g. 500GiB.'),
    gpu: {
      type: 'object',
      additionalProperties: false,
      required: ['memory'],
      description: 'GPU memory the machine can give to processes with a gpu grant.',
      nullable: true,
      properties: { memory: { type: 'string', pattern: SIZE_PATTERN, description: 'Bytes, e.g. 16GiB.' } },
    },
  },
};

const gpu: JSONSchemaType<GpuEntry> = {
  type: 'object',
  additionalProperties: false,
  required: ['memory'],
  description: 'WebGPU compute through the lowcloud:gpu interface (lowcloud/gpu.h). Absent: a guest that imports it does not start.',
  properties: {
    memory: { type: 'string', pattern: SIZE_PATTERN, description: 'Bytes of GPU buffers the guest may hold at once, e.g. 64MiB; past it, creating a buffer fails inside the guest.' },
    submitSeconds: { type: 'number', exclusiveMinimum: 0, description: 'Longest a submission may run before the guest is ended with a gpu violation (default 10).', nullable: true },
  },
};

const machine: JSONSchemaType<MachineEntry> = {
  type: 'object',
  additionalProperties: false,
  required: ['agent'],
  properties: {
    agent: {
      type: 'string',
      pattern: AGENT_PATTERN,
      description: 'Where the agent listens: wss://host:port (ws:// only on loopback), or "local" for an agent `lowcloud up` starts here.',
    },
    address: {
      type: 'string',
      pattern: '^[A-Za-z0-9.:-]+$',
      description: "How other machines reach this machine's processes: an IP address or a host name. Default: the host of agent; 127.0.0.1 for a local agent. Named connect targets (kv-a:7101) resolve to it.",
      nullable: true,
    },
    key: {
      type: 'string',
      pattern: KEY_PATTERN,
      description: "The agent's public key, pinned like ssh known_hosts: ed25519: + base64 of the raw 32 bytes. Required unless agent is local.",
      nullable: true,
    },
    region: { type: 'string', description: 'Free-form label, e.g. eu-west.', nullable: true },
    capacity: { ...capacity, nullable: true },
  },
};

const network: JSONSchemaType<NetworkEntry> = {
  type: 'object',
  additionalProperties: false,
  description: 'Sockets the process may use (WASI 0.2 guests). Everything not listed is denied.',
  properties: {
    listen: {
      type: 'array',
      items: { type: 'integer', minimum: 1, maximum: 65535 },
      uniqueItems: true,
      description: 'TCP ports it may bind and listen on.',
      nullable: true,
    },
    connect: {
      type: 'array',
      items: { type: 'string', pattern: CONNECT_PATTERN },
      description: 'Targets it may connect to: host:port, ip:port, [v6]:port or cidr:port. Order and repeats do not matter.',
      nullable: true,
    },
    udp: { type: 'boolean', description: 'UDP is denied unless true.', nullable: true },
  },
};

const grants: JSONSchemaType<GrantsEntry> = {
  type: 'object',
  additionalProperties: false,
  description: 'Resources the process may use, enforced by the sandbox.',
  properties: {
    cpu: { type: 'number', exclusiveMinimum: 0, description: 'Cores, e.g. 0.5. Absent: not limited.', nullable: true },
    memory: size('Linear memory + host overhead, e.g. 64MiB. Absent: not limited beyond the machine.'),
    disk: size('Byte quota of the private writable directory the guest sees at /data. Absent: no writable directory.'),
    gpu: { ...gpu, nullable: true },
    network: { ...network, nullable: true },
  },
};

const processEntry: JSONSchemaType<ProcessEntry> = {
  type: 'object',
  additionalProperties: false,
  required: ['machine', 'binary'],
  properties: {
    machine: { type: 'string', description: 'The machine (a key of machines) it runs on.' },
    binary: { type: 'string', description: 'Path of the .wasm file relative to this file; its identity is its sha256.' },
    args: { type: 'array', items: { type: 'string' }, description: 'Arguments after argv[0].', nullable: true },
    env: {
      type: 'object',
      additionalProperties: { type: 'string' },
      required: [],
      description: 'The whole environment the guest sees (the host environment is never passed). A value may be sealed:v1:... (lowcloud secret seal): only the agent of this process\'s machine opens it, when it starts the process.',
      nullable: true,
    },
    config: {
      type: 'object',
      propertyNames: { pattern: '^/' },
      additionalProperties: { type: 'string' },
      required: [],
      description: 'Guest path (absolute) -> file relative to this file. Read-only in the guest; a change restarts only this process. A file holding sealed:v1:... (lowcloud secret seal --file) reaches the guest opened, kept in memory.',
      nullable: true,
    },
    grants: { ...grants, nullable: true },
    restart: {
      type: 'string',
      enum: ['always', 'on-failure', 'never'],
      description: 'When the agent restarts it. Default: on-failure.',
      nullable: true,
    },
    isolation: {
      type: 'string',
      enum: ['process', 'shared'],
      description: 'process (default): a guest host of its own behind the full wall. shared: a guest host shared with other shared processes of the machine, separated from them by the WebAssembly sandbox and the runtime layer (cheaper, faster to start). A change is a replace.',
      nullable: true,
    },
    allowUnwalled: {
      type: 'boolean',
      description: 'true: where the agent cannot build the kernel wall (bubblewrap or util-linux missing or broken), this process runs without it, with the JavaScript WASI layer only, instead of being refused (GRANT_UNAVAILABLE); the plan and status say so. Where the wall can be built it is used. Default false. A change is a replace.',
      nullable: true,
    },
  },
};

export const infraSchema: JSONSchemaType<InfraFile> = {
  $id: 'https://lowcloud.dev/schema/infra.schema.json',
  title: 'lowcloud infrastructure file',
  type: 'object',
  additionalProperties: false,
  required: ['version', 'machines'],
  properties: {
    version: { type: 'integer', const: 1, description: 'Format version. This lowcloud reads version 1.' },
    machines: {
      type: 'object',
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: machine,
      required: [],
      description: 'Machines by name. Each runs a lowcloud agent.',
    },
    processes: {
      type: 'object',
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: processEntry,
      required: [],
      description: 'Processes by name, unique in the file.',
      nullable: true,
    },
  },
};
