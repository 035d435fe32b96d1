import type { PlanProcess, PlanState, ProcessLists } from './types.js';
import { own } from '../own.js';

/**
 * Names whose place in a table of processes is not their place in sorted lists: array-index-like
 * names (an object lists them first) and names an object already has from its prototype
 * (`constructor`). A state holding one is walked through its table, as before the lists.
 */
const INDEX_LIKE = /^(?:0|[1-9][0-9]*)$/;
const PROTO = new Set(Object.getOwnPropertyNames(Object.prototype));

const usable = new WeakMap<ProcessLists, boolean>();

/**
 * A state's lists where the plan may walk them instead of its table: names strictly ascending
 * (each once), none index-like or of the prototype, all three lists of one length. Checked once a
 * lists object.
 */
export function listsOf(s: PlanState): ProcessLists | undefined {
  const l = s.lists;
  if (l === undefined) return undefined;
  let ok = usable.get(l);
  if (ok === undefined) {
    const { names } = l;
    ok = l.machineOf.length === names.length && l.digests.length === names.length;
    for (let i = 0; i < names.length && ok; i++) {
      const n = names[i] as string;
      const c = n.charCodeAt(0);
      if ((i > 0 && !((names[i - 1] as string) < n)) || (c >= 0x30 && c <= 0x39 && INDEX_LIKE.test(n)) || PROTO.has(n)) ok = false;
    }
    usable.set(l, ok);
  }
  return ok ? l : undefined;
}

/** The index of `name` in sorted `names`, or -1. */
export function indexOfName(names: readonly string[], name: string): number {
  let lo = 0;
  let hi = names.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const n = names[mid] as string;
    if (n === name) return mid;
    if (n < name) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** `s.processes[name]`, found in the lists where they can be walked (the table is then not built). */
export function processNamed(s: PlanState, name: string): PlanProcess | undefined {
  const l = listsOf(s);
  if (l === undefined) return own(s.processes, name);
  const i = indexOfName(l.names, name);
  return i < 0 ? undefined : l.at(i);
}
