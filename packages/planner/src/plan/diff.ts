import type { ProcessSpec } from '@lowcloud/api';
import { envDigests, formatSize, isolationOf, parseConnectTarget } from '@lowcloud/api/infra';
import { listsOf, processNamed } from './process-lists.js';
import type { Change, FieldChange, PlanProcess, PlanState, ProcessLists } from './types.js';
import { own } from '../own.js';

/**
 * What changed for each process between two states, by content: a binary or config file counts as
 * changed iff its digest changed. Processes come out sorted by name so plans are deterministic.
 */
export function diffStates(a: PlanState, b: PlanState): Change[] {
  const x = listsOf(a);
  const y = listsOf(b);
  if (x !== undefined && y !== undefined) return diffLists(a, b, x, y);
  const bNames = Object.keys(b.processes);
  const names = sortedUnion(Object.keys(a.processes), bNames);
  const changes: Change[] = [];
  const named = changedDigests(a, b, bNames);
  for (const name of names) {
    const before = own(a.processes, name);
    const after = own(b.processes, name);
    if (before === undefined && after !== undefined) changes.push(added(name, after));
    else if (before !== undefined && after === undefined) changes.push(removed(name, before.machine));
    else if (before !== undefined && after !== undefined && before.digest !== after.digest) changes.push(replaced(a, b, name, before, after, named));
    else if (before !== undefined && after !== undefined && before.machine !== after.machine) changes.push(moved(name, before.machine, after.machine));
  }
  return changes;
}

/**
 * diffStates over two states' sorted lists (process-lists.ts): one merge walk of names, machines
 * and digests; a process object is read only where it changes. The same changes as the walk of
 * the tables (process-lists.property.test.ts).
 */
function diffLists(a: PlanState, b: PlanState, x: ProcessLists, y: ProcessLists): Change[] {
  const named: ChangedDigests = new Map();
  const changes: Change[] = [];
  const merge = (each: (i: number, j: number) => void) => {
    let i = 0;
    let j = 0;
    while (i < x.names.length || j < y.names.length) {
      const p = x.names[i];
      const q = y.names[j];
      if (q === undefined || (p !== undefined && p < q)) each(i++, -1);
      else if (p === undefined || q < p) each(-1, j++);
      else each(i++, j++);
    }
  };
  // B's order is its names' order: `index` as changedDigests counts it.
  merge((i, j) => {
    if (i < 0 || j < 0 || x.digests[i] === y.digests[j]) return;
    const old = x.digests[i] as string;
    const list = named.get(old) ?? [];
    list.push({ name: y.names[j] as string, digest: y.digests[j] as string, index: j + 1 });
    named.set(old, list);
  });
  merge((i, j) => {
    if (i < 0) changes.push(added(y.names[j] as string, y.at(j)));
    else if (j < 0) changes.push(removed(x.names[i] as string, x.machineOf[i] as string));
    else if (x.digests[i] !== y.digests[j]) changes.push(replaced(a, b, y.names[j] as string, x.at(i), y.at(j), named));
    else if (x.machineOf[i] !== y.machineOf[j]) changes.push(moved(y.names[j] as string, x.machineOf[i] as string, y.machineOf[j] as string));
  });
  return changes;
}

function added(name: string, after: PlanProcess): Change {
  const because = unwalledReasons(undefined, after.spec);
  return { process: name, actions: ['start'], reason: 'new', paths: [], fields: [], to: after.machine, ...(because.length > 0 ? { because } : {}) };
}

function removed(name: string, machine: string): Change {
  return { process: name, actions: ['stop'], reason: 'removed', paths: [], fields: [], from: machine };
}

function replaced(a: PlanState, b: PlanState, name: string, before: PlanProcess, after: PlanProcess, named: ChangedDigests): Change {
  // Env compared by value where both sides have their values (two files): equal values have equal
  // digests, so the fields are the same, without hashing every value of every changed process.
  const byValue = before.envDigests === undefined && after.envDigests === undefined;
  const fields = specFieldChanges(before.spec, after.spec, byValue ? before.spec.env : envOf(before), byValue ? after.spec.env : envOf(after));
  const moved = before.machine !== after.machine;
  if (moved) fields.unshift({ path: 'machine', from: before.machine, to: after.machine });
  const onlyConfig = !moved && fields.every((f) => f.path.startsWith('config.'));
  // A sealed value's identity is its ciphertext's digest: re-sealing it is a change, named as such.
  const secret = new Set([...(before.sealed ?? []), ...(after.sealed ?? [])]);
  const onlySecrets = !moved && fields.length > 0 && fields.every((f) => secret.has(f.path));
  const because = [...dependencyReasons(a, b, before.spec, after.spec, named), ...unwalledReasons(before.spec, after.spec)];
  return {
    process: name,
    actions: onlyConfig ? ['replace-config'] : moved ? ['start', 'stop'] : ['stop', 'start'],
    reason: moved ? 'moved' : onlySecrets ? 'secret-changed' : onlyConfig ? 'config-changed' : 'replaced',
    paths: fields.map((f) => f.path),
    fields,
    from: before.machine,
    to: after.machine,
    ...(because.length > 0 ? { because } : {}),
  };
}

function moved(name: string, from: string, to: string): Change {
  return { process: name, actions: ['start', 'stop'], reason: 'moved', paths: ['machine'], fields: [{ path: 'machine', from, to }], from, to };
}

/**
 * The names of both sides, sorted, each once. Both lists come sorted from resolve.ts: merged in
 * one pass then (a Set and a sort of 200,000 names cost ~0.3 s at 100,000 processes).
 */
function sortedUnion(x: string[], y: string[]): string[] {
  const isSorted = (l: string[]) => l.every((n, i) => i === 0 || (l[i - 1] as string) < n);
  if (!isSorted(x) || !isSorted(y)) return [...new Set([...x, ...y])].sort();
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < x.length || j < y.length) {
    const p = x[i];
    const q = y[j];
    if (q === undefined || (p !== undefined && p < q)) {
      out.push(p as string);
      i++;
    } else if (p === undefined || q < p) {
      out.push(q);
      j++;
    } else {
      out.push(p);
      i++;
      j++;
    }
  }
  return out;
}

const short = (digest: string) => `sha256:${digest.slice(0, 12)}`;

/** Processes whose digest changed from A to B, by their old digest, in B's order (`index`). */
type ChangedDigests = Map<string, { name: string; digest: string; index: number }[]>;

/** `bNames`: Object.keys(b.processes), B's order (walked by name: Object.entries of 100,000 processes cost ~0.15 s). */
function changedDigests(a: PlanState, b: PlanState, bNames: string[]): ChangedDigests {
  const out: ChangedDigests = new Map();
  let index = 0;
  for (const name of bNames) {
    const p = b.processes[name] as PlanProcess;
    const old = own(a.processes, name);
    index++;
    if (old === undefined || old.digest === p.digest) continue;
    const list = out.get(old.digest) ?? [];
    list.push({ name, digest: p.digest, index });
    out.set(old.digest, list);
  }
  return out;
}

/** Every 64-character window of each run of lowercase hex in `text`: where a digest can be named. */
function digestWindows(text: string): Set<string> {
  const out = new Set<string>();
  for (const run of text.matchAll(/[0-9a-f]{64,}/g)) {
    for (let i = 0; i + 64 <= run[0].length; i++) out.add(run[0].slice(i, i + 64));
  }
  return out;
}

/**
 * Why a process's spec changed through other processes: a named connect target whose address
 * changed (it moved, or its machine's address did), or a process whose digest its args or env
 * name (`${map-a:digest}`) that changed. The named digests are looked up, not searched for
 * process by process: a plan of many changes stays linear.
 */
function dependencyReasons(a: PlanState, b: PlanState, x: ProcessSpec, y: ProcessSpec, named: ChangedDigests): string[] {
  const out: string[] = [];
  const addresses = (spec: ProcessSpec) => {
    const m = new Map<string, string>();
    for (const text of spec.grants.network.connect) {
      // Only a resolved process target (name@address:port) has an address to compare.
      if (!text.includes('@')) continue;
      const t = parseConnectTarget(text);
      if (t.kind === 'process' && t.address !== undefined) m.set(t.name, t.address);
    }
    return m;
  };
  const before = addresses(x);
  for (const [name, address] of addresses(y)) {
    const was = before.get(name);
    if (was === undefined || was === address) continue;
    const pa = processNamed(a, name);
    const pb = processNamed(b, name);
    if (pa !== undefined && pb !== undefined && pa.machine !== pb.machine) out.push(`${name} moved: its address changed (${was} -> ${address})`);
    else out.push(`${name}'s machine ${pb?.machine ?? '?'} changed its address (${was} -> ${address})`);
  }
  if (named.size === 0) return out;
  const text = (spec: ProcessSpec) => [...spec.args, ...Object.values(spec.env)].join('\n');
  const ty = text(y);
  const hits: { name: string; index: number }[] = [];
  for (const d of digestWindows(text(x))) for (const p of named.get(d) ?? []) if (ty.includes(p.digest)) hits.push(p);
  for (const p of hits.sort((l, r) => l.index - r.index)) out.push(`${p.name} changed (its digest is named here)`);
  return out;
}

/**
 * What an `allowUnwalled` that is on (or turned on or off) means, for the plan to say: the operator
 * reviewing it sees that the process may run without the kernel wall.
 */
function unwalledReasons(x: ProcessSpec | undefined, y: ProcessSpec): string[] {
  const was = x?.allowUnwalled === true;
  const is = y.allowUnwalled === true;
  if (is && !was) return [UNWALLED];
  if (was && !is) return ['allowUnwalled off: the agent refuses to start it where it cannot build the kernel wall'];
  return [];
}

/** The plan's words for a process that opted in (docs/infra-file.md allowUnwalled). */
export const UNWALLED = 'allowUnwalled: runs WITHOUT the kernel wall where the agent cannot build it';

/** A process's env as value digests: live state carries only those, so both sides compare them. */
function envOf(p: PlanProcess): Record<string, string> {
  return p.envDigests ?? envDigests(p.spec.env);
}

/**
 * Field-level differences between two specs, with values safe to print. Env is compared by the
 * digests of its values (`envA`/`envB`, computed from the specs when not given), or by the values
 * themselves where both sides pass them: only whether each differs is printed, never a value.
 */
export function specFieldChanges(a: ProcessSpec, b: ProcessSpec, envA = envDigests(a.env), envB = envDigests(b.env)): FieldChange[] {
  const out: FieldChange[] = [];
  if (a.binary !== b.binary) out.push({ path: 'binary', from: short(a.binary), to: short(b.binary) });
  if (JSON.stringify(a.args) !== JSON.stringify(b.args)) out.push({ path: 'args', from: JSON.stringify(a.args), to: JSON.stringify(b.args) });
  // Env values may be secrets: say which variables changed, never their values.
  for (const k of [...new Set([...Object.keys(envA), ...Object.keys(envB)])].sort()) {
    const x = envA[k];
    const y = envB[k];
    if (x !== y) out.push({ path: `env.${k}`, from: x === undefined ? '(unset)' : '(set)', to: y === undefined ? '(unset)' : x === undefined ? '(set)' : '(changed)' });
  }
  const ga = a.grants;
  const gb = b.grants;
  const num = (v: number | undefined, size: boolean) => (v === undefined ? '(none)' : size ? formatSize(v) : String(v));
  if (ga.cpu !== gb.cpu) out.push({ path: 'grants.cpu', from: num(ga.cpu, false), to: num(gb.cpu, false) });
  if (ga.memory !== gb.memory) out.push({ path: 'grants.memory', from: num(ga.memory, true), to: num(gb.memory, true) });
  if (ga.disk !== gb.disk) out.push({ path: 'grants.disk', from: num(ga.disk, true), to: num(gb.disk, true) });
  if (ga.gpu?.memory !== gb.gpu?.memory) out.push({ path: 'grants.gpu.memory', from: num(ga.gpu?.memory, true), to: num(gb.gpu?.memory, true) });
  if (ga.gpu?.submitSeconds !== gb.gpu?.submitSeconds) out.push({ path: 'grants.gpu.submitSeconds', from: num(ga.gpu?.submitSeconds, false), to: num(gb.gpu?.submitSeconds, false) });
  for (const k of ['listen', 'connect'] as const) {
    if (JSON.stringify(ga.network[k]) !== JSON.stringify(gb.network[k])) {
      out.push({ path: `grants.network.${k}`, from: JSON.stringify(ga.network[k]), to: JSON.stringify(gb.network[k]) });
    }
  }
  if ((ga.network.udp ?? false) !== (gb.network.udp ?? false)) {
    out.push({ path: 'grants.network.udp', from: String(ga.network.udp ?? false), to: String(gb.network.udp ?? false) });
  }
  if (a.restart !== b.restart) out.push({ path: 'restart', from: a.restart, to: b.restart });
  // Another guest host: a replace, never a replace-config (the plan says "replace: isolation changed").
  if (isolationOf(a) !== isolationOf(b)) out.push({ path: 'isolation', from: isolationOf(a), to: isolationOf(b) });
  // The wall is built (or not) as a guest host starts: a replace, never a replace-config.
  if ((a.allowUnwalled ?? false) !== (b.allowUnwalled ?? false)) out.push({ path: 'allowUnwalled', from: String(a.allowUnwalled ?? false), to: String(b.allowUnwalled ?? false) });
  // Config files: digests only - contents may hold secrets.
  for (const p of [...new Set([...Object.keys(a.config), ...Object.keys(b.config)])].sort()) {
    const x = a.config[p];
    const y = b.config[p];
    if (x !== y) out.push({ path: `config.${p}`, from: x === undefined ? '(absent)' : short(x), to: y === undefined ? '(absent)' : short(y) });
  }
  return out;
}
