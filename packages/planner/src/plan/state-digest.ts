import { createHash } from 'node:crypto';
import { canonicalJson, sha256Hex } from '@lowcloud/api/infra';
import type { PlanState } from './types.js';

// The digest of a plan state (document.ts writes it into the plan as base.digest and
// target.digest). Apart from the document so that `plan`'s side workers, which work it out for
// their side (load-worker.ts), load this and not the plan code.

/**
 * sha256 of the canonical JSON of every machine (agent, key) and process (machine, spec digest).
 * Written straight into the hash, names in canonical order: building the object and its canonical
 * text first cost ~1 s a state at 100,000 processes.
 */
export function stateDigest(s: PlanState): string {
  const processes = Object.values(s.processes);
  return stateDigestOf(
    s.machines,
    processes.map((p) => p.name),
    processes.map((p) => p.machine),
    processes.map((p) => p.digest),
  );
}

/** stateDigest of a state given as lists: process `names[i]` on `machineOf[i]` with spec digest `digests[i]`. */
export function stateDigestOf(machineTable: PlanState['machines'], names: string[], machineOf: string[], digests: string[]): string {
  const machines = inOrder(Object.values(machineTable).map((m) => m.name));
  const processes = inOrder(names);
  if (machines === null || processes === null) return slowStateDigest(machineTable, names, machineOf, digests);
  const hash = createHash('sha256');
  let out = '{"machines":{';
  const flush = () => {
    if (out.length < 1 << 16) return;
    hash.update(out);
    out = '';
  };
  const machineList = Object.values(machineTable);
  for (let k = 0; k < machines.length; k++) {
    const m = machineList[machines[k] as number] as PlanState['machines'][string];
    out += `${k === 0 ? '' : ','}${JSON.stringify(m.name)}:{"agent":${JSON.stringify(m.agent)}${m.key === undefined ? '' : `,"key":${JSON.stringify(m.key)}`}}`;
    flush();
  }
  out += '},"processes":{';
  for (let k = 0; k < processes.length; k++) {
    const i = processes[k] as number;
    out += `${k === 0 ? '' : ','}${JSON.stringify(names[i])}:{"digest":${JSON.stringify(digests[i])},"machine":${JSON.stringify(machineOf[i])}}`;
    flush();
  }
  return hash.update(`${out}}}`).digest('hex');
}

/**
 * The indexes of `names` in canonical JSON's order of names, or null where only the general writer
 * has it right: names that look like array indexes (canonical JSON puts them first) or that repeat.
 * Sorted already where the state was resolved (resolve.ts sorts processes): checked, not sorted again.
 */
function inOrder(names: string[]): number[] | null {
  const order = names.map((_, i) => i);
  let sorted = true;
  for (let i = 1; i < names.length && sorted; i++) sorted = (names[i - 1] as string) < (names[i] as string);
  if (!sorted) order.sort((x, y) => ((names[x] as string) < (names[y] as string) ? -1 : (names[x] as string) > (names[y] as string) ? 1 : 0));
  for (let k = 0; k < order.length; k++) {
    const n = names[order[k] as number] as string;
    const c = n.charCodeAt(0);
    if ((c >= 0x30 && c <= 0x39 && INDEX_LIKE.test(n)) || (k > 0 && names[order[k - 1] as number] === n)) return null;
  }
  return order;
}

const INDEX_LIKE = /^(?:0|[1-9][0-9]*)$/;

function slowStateDigest(machineTable: PlanState['machines'], names: string[], machineOf: string[], digests: string[]): string {
  return sha256Hex(
    canonicalJson({
      machines: Object.fromEntries(Object.values(machineTable).map((m) => [m.name, { agent: m.agent, key: m.key }])),
      processes: Object.fromEntries(names.map((n, i) => [n, { machine: machineOf[i], digest: digests[i] }])),
    }),
  );
}
