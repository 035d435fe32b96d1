import { processNamed } from './process-lists.js';
import type { Change, PlanCall, PlanState, ReplaceConfigCall, StartCall, StopCall } from './types.js';

/** The calls one change makes, before ordering; `phase` is filled by the planner. */
export function callsFor(change: Change, b: PlanState): { start?: StartCall | undefined; stop?: StopCall | undefined; replace?: ReplaceConfigCall } {
  const target = processNamed(b, change.process);
  const start = (): StartCall | undefined =>
    target === undefined
      ? undefined
      : { machine: target.machine, call: 'start', process: change.process, phase: 0, spec: target.spec, specDigest: target.digest };
  const stop = (): StopCall | undefined =>
    change.from === undefined ? undefined : { machine: change.from, call: 'stop', process: change.process, phase: 0 };
  switch (change.reason) {
    case 'new':
      return { start: start() };
    case 'removed':
      return { stop: stop() };
    case 'secret-changed':
    case 'config-changed':
      // secret-changed: sealed config files only is a replace-config, sealed env a replace.
      if (!change.actions.includes('replace-config')) return { start: start(), stop: stop() };
      return target === undefined
        ? {}
        : {
            replace: {
              machine: target.machine,
              call: 'replace-config',
              process: change.process,
              phase: 0,
              config: target.spec.config,
              specDigest: target.digest,
            },
          };
    case 'replaced':
    case 'moved':
      return { start: start(), stop: stop() };
  }
}

/** The blobs (binary and config file digests) an agent needs to make a call. */
export function callBlobs(c: PlanCall): string[] {
  switch (c.call) {
    case 'start':
      return [c.spec.binary, ...Object.values(c.spec.config)];
    case 'replace-config':
      return Object.values(c.config);
    case 'stop':
      return [];
  }
}

/** Deterministic order: by phase, then machine, then process name (stop before start within a name). */
export function sortCalls(calls: PlanCall[]): PlanCall[] {
  const rank = { stop: 0, 'replace-config': 1, start: 2 } as const;
  return calls.sort(
    (x, y) =>
      x.phase - y.phase ||
      cmp(x.machine, y.machine) ||
      cmp(x.process, y.process) ||
      rank[x.call] - rank[y.call],
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
