import os from 'node:os';
import type { GuestExit } from '../types.js';

/** Everything the host knows about how a guest ended, however it watched it (spawned or re-attached). */
export interface ExitEvidence {
  /** A grant's layers recognised a violation (grants/*.ts `violation`), first in grant order. */
  violation: GuestExit | null;
  /** What the guest host reported for this guest (its IPC message, or its exit record). */
  reported: GuestExit | null;
  stopRequested: boolean;
  /** How the process ended, when the host was its parent; null when it re-attached (not its child). */
  status: { code: number | null; signal: NodeJS.Signals | null; wrapped: boolean } | null;
}

/**
 * The one exit classifier, for spawned and re-attached guests alike. Precedence: a grant's
 * violation (the host killed it, or the kernel did), then the guest host's own word, then a stop
 * the host asked for, then what the process status says.
 */
export function classifyExit(e: ExitEvidence): GuestExit {
  if (e.violation !== null) return e.violation;
  if (e.reported !== null) return e.reported;
  if (e.stopRequested) return { kind: 'stopped' };
  if (e.status === null) return { kind: 'signal', signal: 'unknown (exited while detached)' };
  const { code, signal, wrapped } = e.status;
  if (signal !== null) return { kind: 'signal', signal };
  // Wrapped (launcher, bubblewrap): a guest host that did not finish was killed; 128 + signal.
  if (wrapped && code !== null && code > 128) return { kind: 'signal', signal: signalName(code - 128) };
  return { kind: 'exit', code: code ?? 0 };
}

function signalName(n: number): string {
  return Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}
