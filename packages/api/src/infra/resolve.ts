import { sha256Hex } from '../digest.js';
import { InvalidInputError, type Diagnostic } from '../errors.js';
import { isSealed, parseSealed, SecretError } from '../secrets/sealed-format.js';
import type { ProcessSpec } from '../spec.js';
import { formatSize, parseSize as parseSizeText } from '../units.js';
import type { FileRead, FileSource } from './file-source.js';
import type { ProcessEntry } from './types.js';
import { fillDigests, machineAddress, NameResolver, parseAddress } from './names.js';
import { closest, parseInfra, type ParsedInfra } from './parse.js';
import { resolvedSpecDigest, SpecParts } from './spec-digest.js';

export interface ResolvedMachine {
  name: string;
  agent: string;
  /** How other machines reach its processes: `address:` in the file, else the host of `agent`; 127.0.0.1 for `local`. */
  address: string;
  key?: string;
  region?: string;
  capacity: { cpu?: number; memory?: number; disk?: number; gpu?: number };
}

export interface ResolvedProcess {
  name: string;
  machine: string;
  spec: ProcessSpec;
  /** specDigest(spec): equal iff nothing about the process changed. */
  digest: string;
  /** Where the content came from, for messages and uploads (paths relative to the infra file). */
  files: { binary: string; config: Record<string, string> };
  /** Fields holding sealed secrets (`env.DB_PASSWORD`, `config./etc/app.toml`), sorted; their identity is their ciphertext's. */
  sealed: string[];
}

/** An infra file with units parsed, defaults filled, files hashed and every cross-check passed. */
export interface ResolvedInfra {
  file: string;
  machines: Record<string, ResolvedMachine>;
  processes: Record<string, ResolvedProcess>;
  /** sha256 -> path (relative to the infra file) of every binary and config file. */
  blobs: Record<string, string>;
}

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];
/** How many distinct blocks of a kind (grants, env, config) resolver remembers the resolved value of. */
const MEMO = 4096;
const REPO_HINT = 'keep binary and config paths relative to the infra file and inside the repository';

/** The bytes of the infra file itself, as text; a missing or refused file is a diagnostic. */
async function readInfraText(fileLabel: string, relPath: string, source: FileSource): Promise<string> {
  const r = await source.read(relPath);
  if (r.kind === 'refused') throw new InvalidInputError([{ file: fileLabel, path: '', message: `${r.reason} (in the ${source.label})`, hint: REPO_HINT }]);
  if (r.kind === 'missing') throw new InvalidInputError([{ file: fileLabel, path: '', message: `not found in the ${source.label}`, hint: 'check the path' }]);
  // A view, not a copy: at 100,000 processes the file is 36 MB, and a plan reads two. (Reading
  // ASCII text as latin1 measured no faster than decoding it.)
  return Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength).toString('utf8');
}

/** Read, parse, check and resolve an infra file from a source; throws every problem at once. */
export async function loadInfra(fileLabel: string, relPath: string, source: FileSource): Promise<ResolvedInfra> {
  return resolveInfra(parseInfra(await readInfraText(fileLabel, relPath, source), fileLabel), source);
}

/**
 * An infra file resolved and checked as loadInfra does (the same errors), kept as each process's
 * name, machine and digest, in the order of ResolvedInfra's processes; a spec is built again when
 * asked for. What a plan needs of a big file, where most processes do not change: at 100,000
 * processes, keeping every resolved spec alive until the side was done was a second object tree
 * beside the parsed file's, and much of the garbage collector's work.
 */
export interface ResolvedDigests {
  file: string;
  machines: Record<string, ResolvedMachine>;
  blobs: Record<string, string>;
  names: string[];
  machineOf: string[];
  digests: string[];
  /** Index -> sealed fields, for the processes that have any. */
  sealed: Record<number, string[]>;
  /** The spec of the process at `index`: the one loadInfra gives. */
  spec(index: number): ProcessSpec;
}

/** loadInfra, keeping only what ResolvedDigests keeps. */
export async function loadInfraDigests(fileLabel: string, relPath: string, source: FileSource): Promise<ResolvedDigests> {
  return resolveInfraDigests(parseInfra(await readInfraText(fileLabel, relPath, source), fileLabel), source);
}

export async function resolveInfra(parsed: ParsedInfra, source: FileSource): Promise<ResolvedInfra> {
  const r = await resolver(parsed, source);
  const processes: Record<string, ResolvedProcess> = {};
  for (let i = 0; i < r.keys.length; i++) {
    const name = r.keys[i] as string;
    const p = r.entries[i] as ProcessEntry;
    const { spec, sealed } = r.process(name, p, r.diags);
    processes[name] = { name, machine: p.machine, spec, digest: resolvedSpecDigest(spec, r.parts), files: { binary: p.binary, config: p.config ?? {} }, sealed: sealed.length < 2 ? sealed : sealed.sort() };
  }
  if (r.names.namesDigests) fillDigests(processes, parsed, r.diags);
  const sorted = sortRecord(processes);
  const order = sorted.order;
  const grants = new GrantTable(order.length);
  order.forEach((p, i) => grants.set(i, p.spec.grants));
  checkMachines(
    parsed,
    r.machines,
    order.map((_, i) => i),
    order.map((p) => p.name),
    order.map((p) => p.machine),
    grants,
    r.diags,
  );
  r.done();
  return { file: parsed.file, machines: r.machines, processes: sorted.record, blobs: sortRecord(r.blobs).record };
}

/** resolveInfra, keeping only what ResolvedDigests keeps: the same checks in the same order, so the same errors. */
export async function resolveInfraDigests(parsed: ParsedInfra, source: FileSource): Promise<ResolvedDigests> {
  const r = await resolver(parsed, source);
  const { keys, entries } = r;
  const digests: string[] = new Array<string>(keys.length);
  const machineOf: string[] = new Array<string>(keys.length);
  const grants = new GrantTable(keys.length);
  const sealedAt: (string[] | undefined)[] = new Array<string[] | undefined>(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const p = entries[i] as ProcessEntry;
    const { spec, sealed } = r.process(keys[i] as string, p, r.diags);
    digests[i] = resolvedSpecDigest(spec, r.parts);
    machineOf[i] = p.machine;
    grants.set(i, spec.grants);
    if (sealed.length > 0) sealedAt[i] = sealed.length < 2 ? sealed : sealed.sort();
  }
  // `${name:digest}` makes one process's spec depend on others' digests: the whole resolution then.
  if (r.names.namesDigests) return fromResolved(await resolveInfra(parsed, source));
  const { sorted, listed: order } = recordOrder(keys);
  checkMachines(parsed, r.machines, sorted, keys, machineOf, grants, r.diags);
  r.done();
  const sealed: Record<number, string[]> = {};
  order.forEach((i, k) => {
    const s = sealedAt[i];
    if (s !== undefined) sealed[k] = s;
  });
  const names = order.map((i) => keys[i] as string);
  return {
    file: parsed.file,
    machines: r.machines,
    blobs: sortRecord(r.blobs).record,
    names,
    machineOf: order.map((i) => machineOf[i] as string),
    digests: order.map((i) => digests[i] as string),
    sealed,
    // Built again as the loop above built it: from the same parsed file, files and names; no problem
    // can come up that the loop did not report.
    spec: (k) => r.process(names[k] as string, entries[order[k] as number] as ProcessEntry, []).spec,
  };
}

function fromResolved(r: ResolvedInfra): ResolvedDigests {
  const list = Object.values(r.processes);
  const sealed: Record<number, string[]> = {};
  list.forEach((p, i) => {
    if (p.sealed.length > 0) sealed[i] = p.sealed;
  });
  return {
    file: r.file,
    machines: r.machines,
    blobs: r.blobs,
    names: list.map((p) => p.name),
    machineOf: list.map((p) => p.machine),
    digests: list.map((p) => p.digest),
    sealed,
    spec: (i) => (list[i] as ResolvedProcess).spec,
  };
}

/**
 * Indexes into `keys` sorted by name (`sorted`: the order resolveInfra checks machines in), and in
 * the order sortRecord's record enumerates them (`listed`): the same, except that names which are
 * array indexes come first, in numeric order, as in every JavaScript object.
 */
function recordOrder(keys: string[]): { sorted: number[]; listed: number[] } {
  const sorted = keys.map((_, i) => i);
  let inOrder = true;
  for (let i = 1; i < keys.length && inOrder; i++) inOrder = (keys[i - 1] as string) < (keys[i] as string);
  if (!inOrder) sorted.sort((x, y) => ((keys[x] as string) < (keys[y] as string) ? -1 : (keys[x] as string) > (keys[y] as string) ? 1 : 0));
  if (!keys.some((k) => INDEX_LIKE.test(k))) return { sorted, listed: sorted };
  // Rare: let an object put the names in its order.
  const at: Record<string, number> = {};
  for (const i of sorted) at[keys[i] as string] = i;
  return { sorted, listed: Object.values(at) };
}

const INDEX_LIKE = /^(?:0|[1-9][0-9]*)$/;

/** What resolving a process needs of the whole file: its machines, every file read and hashed once, names, sizes. */
async function resolver(parsed: ParsedInfra, source: FileSource) {
  const { value, at } = parsed;
  const diags: Diagnostic[] = [];
  const machines: Record<string, ResolvedMachine> = {};
  // What each process's machine is looked up in: a Map finds only declared machines (a process on
  // `constructor` is on an unknown machine, not on Object's) and at 100,000 processes looks up a
  // name faster than a table of 10,000 machines does.
  const machineNamed = new Map<string, ResolvedMachine>();
  // A fleet writes few distinct sizes (64MiB, 1GiB): each parsed once.
  const sizes = new Map<string, number>();
  const parseSize = (text: string) => {
    let n = sizes.get(text);
    if (n === undefined) sizes.set(text, (n = parseSizeText(text)));
    return n;
  };

  for (const [name, m] of Object.entries(value.machines)) {
    if (m.agent !== 'local' && m.key === undefined) {
      diags.push(at(['machines', name, 'agent'], `machine ${name} has a remote agent but no key`, 'add key: ed25519:... as printed by `lowcloud agent` on that machine (pinned like ssh known_hosts)'));
    }
    if (m.agent.startsWith('ws://') && !/^ws:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\/?$/.test(m.agent)) {
      diags.push(at(['machines', name, 'agent'], `plain ws:// is only allowed on loopback (${m.agent})`, 'use wss:// so configs and secrets are encrypted in transit'));
    }
    if (m.key !== undefined && Buffer.from(m.key.slice('ed25519:'.length), 'base64').length !== 32) {
      diags.push(at(['machines', name, 'key'], 'the key is not 32 bytes', 'copy the key exactly as `lowcloud agent` prints it'));
    }
    if (m.address !== undefined && parseAddress(m.address) === null) {
      diags.push(at(['machines', name, 'address'], `"${m.address}" is not an IP address or a host name`, 'write how other machines reach this one, e.g. 10.0.0.5, fd00::5 or eu-1.example.com'));
    }
    const capacity: ResolvedMachine['capacity'] = {};
    if (m.capacity?.cpu !== undefined) capacity.cpu = m.capacity.cpu;
    if (m.capacity?.memory !== undefined) capacity.memory = parseSize(m.capacity.memory);
    if (m.capacity?.disk !== undefined) capacity.disk = parseSize(m.capacity.disk);
    if (m.capacity?.gpu !== undefined) capacity.gpu = parseSize(m.capacity.gpu.memory);
    machines[name] = {
      name,
      agent: m.agent,
      address: machineAddress(m),
      ...(m.key === undefined ? {} : { key: m.key }),
      ...(m.region === undefined ? {} : { region: m.region }),
      capacity,
    };
    machineNamed.set(name, machines[name]);
  }

  // Each distinct file is read and hashed once, all at once; then every process is resolved in one
  // synchronous pass (an async step per process cost more than the hashing at 100,000 processes).
  const table = value.processes ?? {};
  const keys = Object.keys(table);
  // Each value looked up by its key: Object.values of a table of 100,000 names (a dictionary, whose
  // order V8 sorts out on each enumeration) took ~0.1 s, twice what the lookups take.
  const entries = new Array<ProcessEntry>(keys.length);
  for (let i = 0; i < keys.length; i++) entries[i] = table[keys[i] as string] as ProcessEntry;
  const paths = new Set<string>();
  for (const p of entries) {
    paths.add(p.binary);
    if (p.config !== undefined) for (const guestPath in p.config) paths.add(p.config[guestPath] as string);
  }
  // A config file is sealed iff it holds a sealed string (the agent applies the same rule); a binary
  // has the wasm header or not: both decided once a file, not once a process.
  type Read = FileRead & { digest?: string; sealed?: boolean; wasm?: boolean };
  const hashes = new Map<string, Read>();
  await Promise.all(
    [...paths].map(async (p) => {
      const r = await source.read(p);
      hashes.set(
        p,
        r.kind === 'file' ? { ...r, digest: sha256Hex(r.bytes), sealed: isSealed(Buffer.from(r.bytes.subarray(0, 7)).toString('latin1')), wasm: WASM_MAGIC.every((b, i) => r.bytes[i] === b) } : r,
      );
    }),
  );
  const hash = (p: string) => hashes.get(p) as Read;

  const names = new NameResolver(parsed, new Map(Object.values(machines).map((m) => [m.name, m.address])));
  const blobs: Record<string, string> = {};
  // A block the file repeats is one parsed object (block-read.ts): its grants, env and config are
  // resolved once too, and their JSON written once (SpecParts), wherever resolving them raised no
  // problem (a problem names the process it is in) and depends on nothing but the block (no
  // `${...}` reference, no sealed value, whose check depends on the process's machine).
  const resolvedGrants = new Map<object, ProcessSpec['grants']>();
  const resolvedEnv = new Map<object, Record<string, string>>();
  const resolvedConfig = new Map<object, Record<string, string>>();
  const parts = new SpecParts();
  /** Kept for at most MEMO blocks a kind: a file whose blocks do not repeat costs a lookup a process, not a table of them. */
  const remember = <T extends object>(memo: Map<object, T>, block: object, value: T) => {
    if (memo.size >= MEMO) return;
    memo.set(block, value);
    parts.shared(value);
  };

  /** The spec of one process and its sealed fields (unsorted); its problems go to `diags`. */
  const process = (name: string, p: ProcessEntry, diags: Diagnostic[]): { spec: ProcessSpec; sealed: string[] } => {
    const base = ['processes', name];
    const machine = machineNamed.get(p.machine);
    if (machine === undefined) {
      const guess = closest(p.machine, Object.keys(machines));
      diags.push(at([...base, 'machine'], `unknown machine "${p.machine}"`, guess !== null ? `did you mean "${guess}"?` : `declare it under machines, or use one of: ${Object.keys(machines).join(', ')}`));
    }
    const bin = hash(p.binary);
    let binary = '';
    if (bin.kind === 'refused') {
      diags.push(at([...base, 'binary'], `binary: ${bin.reason} (in the ${source.label})`, REPO_HINT));
    } else if (bin.kind === 'missing') {
      diags.push(at([...base, 'binary'], `binary ${p.binary} not found in the ${source.label}`, 'check the path; it is relative to the infra file'));
    } else if (bin.wasm !== true) {
      diags.push(at([...base, 'binary'], `${p.binary} is not a WebAssembly binary (no \\0asm header)`, 'point binary at a .wasm module or component'));
    } else {
      binary = bin.digest ?? '';
      blobs[binary] = p.binary;
    }
    const sealed: string[] = [];
    const machineKey = machine?.key;
    const checkSealed = (field: (string | number)[], text: string, name: string, flags: string, redirect: string) => {
      const problem = sealedProblem(text, p.machine, machineKey, `lowcloud secret seal --machine ${p.machine}${flags} ${parsed.file}${redirect}`, parsed.file);
      if (problem === null) sealed.push(name);
      else diags.push(at(field, problem.message, problem.hint));
    };
    const penv = p.env;
    const envKnown = penv === undefined ? undefined : resolvedEnv.get(penv);
    const envKeys = penv === undefined || envKnown !== undefined ? [] : Object.keys(penv);
    let envSealed = false;
    for (const k of envKeys) {
      const v = (penv as Record<string, string>)[k] as string;
      if (isSealed(v)) {
        envSealed = true;
        checkSealed([...base, 'env', k], v, `env.${k}`, '', '');
      }
    }
    const pconfig = p.config;
    let config = pconfig === undefined ? undefined : resolvedConfig.get(pconfig);
    if (config === undefined) {
      const problems = diags.length;
      const sealedBefore = sealed.length;
      config = {};
      for (const [guestPath, file] of Object.entries(pconfig ?? {})) {
        const c = hash(file);
        if (c.kind === 'refused') {
          diags.push(at([...base, 'config', guestPath], `config ${guestPath}: ${c.reason} (in the ${source.label})`, REPO_HINT));
        } else if (c.kind === 'missing' || c.digest === undefined) {
          diags.push(at([...base, 'config', guestPath], `config file ${file} not found in the ${source.label}`, 'check the path; it is relative to the infra file'));
        } else {
          config[guestPath] = c.digest;
          blobs[c.digest] = file;
          if (c.sealed === true) {
            checkSealed([...base, 'config', guestPath], Buffer.from(c.bytes).toString('utf8'), `config.${guestPath}`, ' --file PLAIN-FILE', ` > ${file}`);
          }
        }
      }
      if (pconfig !== undefined && diags.length === problems && sealed.length === sealedBefore) remember(resolvedConfig, pconfig, config);
    }
    const pgrants = p.grants;
    let grants = pgrants === undefined ? undefined : resolvedGrants.get(pgrants);
    if (grants === undefined) {
      const problems = diags.length;
      const g = pgrants ?? {};
      // Fields are set one by one, in the order the plan document prints them (spreads of optional
      // fields cost more than the rest of the loop at 100,000 processes).
      grants = {} as ProcessSpec['grants'];
      if (g.cpu !== undefined) grants.cpu = g.cpu;
      if (g.memory !== undefined) grants.memory = parseSize(g.memory);
      if (g.disk !== undefined) grants.disk = parseSize(g.disk);
      if (g.gpu !== undefined) grants.gpu = g.gpu.submitSeconds === undefined ? { memory: parseSize(g.gpu.memory) } : { memory: parseSize(g.gpu.memory), submitSeconds: g.gpu.submitSeconds };
      const listen = g.network?.listen ?? [];
      grants.network = {
        // One port or none is in order already: the file's own list (no copy a process).
        listen: listen.length < 2 ? listen : [...listen].sort((a, b) => a - b),
        connect: names.connect(g.network?.connect ?? [], () => [...base, 'grants', 'network', 'connect'], diags),
      };
      if (g.network?.udp === true) grants.network.udp = true;
      if (pgrants !== undefined && diags.length === problems) remember(resolvedGrants, pgrants, grants);
    }
    let env = envKnown;
    if (env === undefined) {
      let plain = !envSealed;
      env = {};
      for (const k of envKeys) {
        const v = (penv as Record<string, string>)[k] as string;
        const references = v.includes('${');
        if (references) plain = false;
        const value = references ? names.substitute(v, () => [...base, 'env', k], diags) : v;
        // A variable named __proto__ stays a variable.
        if (k === '__proto__') Object.defineProperty(env, k, { value, enumerable: true, writable: true, configurable: true });
        else env[k] = value;
      }
      if (penv !== undefined && plain) remember(resolvedEnv, penv, env);
    }
    const args = p.args === undefined ? [] : p.args.slice();
    for (let i = 0; i < args.length; i++) {
      const a = args[i] as string;
      if (a.includes('${')) args[i] = names.substitute(a, () => [...base, 'args', i], diags);
    }
    const spec: ProcessSpec = {
      name,
      binary,
      args,
      env,
      config,
      grants,
      restart: p.restart ?? 'on-failure',
    };
    if (p.isolation === 'shared') spec.isolation = 'shared';
    if (p.allowUnwalled === true) spec.allowUnwalled = true;
    return { spec, sealed };
  };

  /** Throws every problem found, in file order. */
  const done = () => {
    if (diags.length > 0) {
      throw new InvalidInputError(diags.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0)));
    }
  };
  return { machines, keys, entries, names, blobs, diags, process, done, parts };
}

/**
 * Why a sealed value cannot be used by a process on `machine`, or null: it must be well-formed, of a
 * version this lowcloud reads, and sealed to the key the file pins for that machine. The planner
 * never opens it (it has no key that could).
 */
function sealedProblem(text: string, machine: string, machineKey: string | undefined, sealCommand: string, file: string): { message: string; hint: string } | null {
  const reseal = `seal it again: ${sealCommand}`;
  let value;
  try {
    value = parseSealed(text);
  } catch (err) {
    const code = err instanceof SecretError ? err.code : 'SECRET_MALFORMED';
    return { message: `${err instanceof Error ? err.message : String(err)} (${code})`, hint: `copy the whole sealed string, or ${reseal}` };
  }
  if (machineKey === undefined) {
    return {
      message: `sealed, but machine ${machine} pins no key, so nothing can be sealed to it (SECRET_WRONG_MACHINE)`,
      hint: `pin its agent's key (key: ed25519:...; a local agent's is in .lowcloud/agents/${machine}/state/agent.pub), then ${reseal}`,
    };
  }
  if (value.recipient !== machineKey) {
    return {
      message: `sealed to the key ${value.recipient}, not to machine ${machine}'s key ${machineKey}: only ${machine}'s agent must open it (SECRET_WRONG_MACHINE)`,
      hint: `a process moved to ${machine} needs its secrets sealed to ${machine}: ${sealCommand}; after re-keying ${machine}'s agent: lowcloud secret reseal --machine ${machine} --old-key OLD-AGENT-KEY ${file}`,
    };
  }
  return null;
}

/**
 * What checkMachines reads of each process's grants, by index: a number a dimension (NaN where
 * none is granted) and the listen ports; no object a process kept alive for it.
 */
class GrantTable {
  readonly cpu: Float64Array;
  readonly memory: Float64Array;
  readonly disk: Float64Array;
  readonly gpu: Float64Array;
  readonly listen: (readonly number[])[];

  constructor(n: number) {
    this.cpu = new Float64Array(n).fill(NaN);
    this.memory = new Float64Array(n).fill(NaN);
    this.disk = new Float64Array(n).fill(NaN);
    this.gpu = new Float64Array(n).fill(NaN);
    this.listen = new Array<readonly number[]>(n);
  }

  set(i: number, g: ProcessSpec['grants']): void {
    if (g.cpu !== undefined) this.cpu[i] = g.cpu;
    if (g.memory !== undefined) this.memory[i] = g.memory;
    if (g.disk !== undefined) this.disk[i] = g.disk;
    if (g.gpu !== undefined) this.gpu[i] = g.gpu.memory;
    this.listen[i] = g.network.listen;
  }
}

/**
 * Grants must fit the machine's declared capacity; listen ports must be unique per address.
 * `order`: every process by name, as indexes; process `i` is `names[i]` on `machineOf[i]`.
 */
function checkMachines(
  parsed: ParsedInfra,
  machines: Record<string, ResolvedMachine>,
  order: readonly number[],
  names: readonly string[],
  machineOf: readonly string[],
  grants: GrantTable,
  diags: Diagnostic[],
): void {
  const byMachine = new Map<string, number[]>();
  for (const i of order) {
    const machine = machineOf[i] as string;
    const list = byMachine.get(machine);
    if (list === undefined) byMachine.set(machine, [i]);
    else list.push(i);
  }
  const portsByAddress = new Map<string, Map<number, number>>();
  for (const m of Object.values(machines)) {
    const mine = byMachine.get(m.name) ?? [];
    for (const dim of ['cpu', 'memory', 'disk', 'gpu'] as const) {
      const cap = m.capacity[dim];
      if (cap === undefined) continue;
      const granted = grants[dim];
      let total = 0;
      for (const i of mine) {
        const g = granted[i] as number;
        if (!Number.isNaN(g)) total += g;
      }
      if (total > cap + 1e-9) {
        const show = (n: number) => (dim === 'cpu' ? `${Math.round(n * 1000) / 1000} cores` : formatSize(n));
        const users = mine.filter((i) => !Number.isNaN(granted[i] as number));
        diags.push(
          parsed.at(
            ['machines', m.name, 'capacity', dim],
            `grants over capacity: processes on ${m.name} are granted ${show(total)} of ${dim} but the machine has ${show(cap)} (${users.map((i) => `${names[i] as string} ${show(granted[i] as number)}`).join(', ')})`,
            `lower the grants, raise capacity.${dim}, or move a process to another machine`,
          ),
        );
      }
    }
    // Machines that share an address (every `local` machine is this computer) share its ports:
    // a named target resolves to address:port, which must mean one process.
    let ports = portsByAddress.get(m.address);
    if (ports === undefined) portsByAddress.set(m.address, (ports = new Map()));
    for (const i of mine) {
      for (const port of grants.listen[i] as readonly number[]) {
        const o = ports.get(port);
        if (o === undefined) {
          ports.set(port, i);
          continue;
        }
        const other = { name: names[o] as string, machine: machineOf[o] as string };
        if (other.machine === m.name) {
          diags.push(
            parsed.at(['processes', names[i] as string, 'grants', 'network', 'listen'], `port ${port} is already granted to ${other.name} on machine ${m.name}`, 'give each process on a machine its own listen ports'),
          );
        } else {
          diags.push(
            parsed.at(
              ['processes', names[i] as string, 'grants', 'network', 'listen'],
              `port ${port} is already granted to ${other.name} on machine ${other.machine}, which has the same address (${m.address}) as ${m.name}${m.agent === 'local' ? ': local machines share this computer' : ''}`,
              'give each process its own listen port across machines that share an address',
            ),
          );
        }
      }
    }
  }
}

/** The record with its keys in sorted order, and its values in that order; no copy when it is sorted already. */
function sortRecord<T>(r: Record<string, T>): { record: Record<string, T>; order: T[] } {
  const keys = Object.keys(r);
  let sorted = true;
  for (let i = 1; i < keys.length && sorted; i++) sorted = (keys[i - 1] as string) < (keys[i] as string);
  if (!sorted) keys.sort();
  const order = keys.map((k) => r[k] as T);
  if (sorted) return { record: r, order };
  const record: Record<string, T> = {};
  for (let i = 0; i < keys.length; i++) record[keys[i] as string] = order[i] as T;
  return { record, order };
}
