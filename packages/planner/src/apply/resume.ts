/**
 * Decides, for one machine, which of a plan's calls are still to do, from the agent's live state.
 *
 * Each process the plan touches on the machine moves through a sequence of states, one per call
 * (e.g. a replace: old digest -> absent -> new digest). The live state must be one of them; then the
 * calls after it are what is left. This one rule makes a re-run resume a partial apply, makes
 * re-applying an applied plan a no-op, and refuses a plan whose machine changed in any other way
 * (someone else applied, an operator stopped a process) - a stale plan, reported per process.
 */

/** The spec digest a process runs with, or `null` when it is not on the machine. */
export type ProcessState = string | null;

/** What resuming needs of a call: a stop leaves the process absent, the others at their spec digest. */
export type ResumableCall = { call: 'stop'; process: string } | { call: 'start' | 'replace-config'; process: string; specDigest: string };

export interface Drift {
  process: string;
  /** States the plan allows at this point, in order (null = absent). */
  expected: ProcessState[];
  actual: ProcessState;
}

export type ResumeDecision<C> =
  | { ok: true; done: C[]; remaining: C[] }
  | { ok: false; drift: Drift[] };

export function decideResume<C extends ResumableCall>(
  calls: readonly C[],
  before: Readonly<Record<string, string>>,
  live: Readonly<Record<string, string>>,
): ResumeDecision<C> {
  const byProcess = new Map<string, C[]>();
  for (const c of calls) byProcess.set(c.process, [...(byProcess.get(c.process) ?? []), c]);

  const drift: Drift[] = [];
  const doneCalls = new Set<C>();
  const names = new Set([...Object.keys(before), ...Object.keys(live), ...byProcess.keys()]);
  for (const name of [...names].sort()) {
    const states: ProcessState[] = [before[name] ?? null];
    for (const c of byProcess.get(name) ?? []) states.push(after(c));
    const actual = live[name] ?? null;
    const at = states.lastIndexOf(actual);
    if (at < 0) {
      drift.push({ process: name, expected: states, actual });
      continue;
    }
    for (const c of (byProcess.get(name) ?? []).slice(0, at)) doneCalls.add(c);
  }
  if (drift.length > 0) return { ok: false, drift };
  return { ok: true, done: calls.filter((c) => doneCalls.has(c)), remaining: calls.filter((c) => !doneCalls.has(c)) };
}

function after(c: ResumableCall): ProcessState {
  return c.call === 'stop' ? null : c.specDigest;
}

export function describeDrift(machine: string, drift: readonly Drift[]): string {
  const show = (s: ProcessState): string => (s === null ? 'absent' : s.slice(0, 12));
  return drift
    .map((d) => `${machine}: process ${d.process} is ${show(d.actual)}, the plan expects ${d.expected.map(show).join(' or ')}`)
    .join('\n');
}
