import type { GuestExit, NetworkAccess } from '@lowcloud/api';
import type { OutputTarget } from '../types.js';

/**
 * The contract between the host (the agent, `lowcloud run`) and a guest host process, both ways.
 * The host hands the guest host its boot options on a pipe (never a file: env values must not
 * reach the disk); the launcher (or bubblewrap) reports the guest host's pid and the kernel's OOM
 * kill on the report pipe; the guest host reports how each guest ended over the IPC channel and
 * in its exit record. Every message is checked by a closed parse function where it is read: the
 * boot options here (the guest host loads nothing it does not need, no ajv: it must start fast),
 * the messages to the host in host/messages.ts.
 */

/** File descriptors of a guest host process; the same through the launcher and the wall. */
export const GUEST_HOST_FD = {
  /** Node.js IPC channel (attached guests only): guest host -> host messages. */
  ipc: 3,
  /** Launcher / bubblewrap -> host: `ready` (the pid as the host sees it), `refused`, `oom`. */
  report: 4,
  /** The wall's seccomp program (bubblewrap reads it). */
  seccomp: 5,
  /** Host -> guest host: the boot options, one JSON document, then end of file. */
  boot: 6,
} as const;

/** One guest as its guest host runs it (a guest host could carry several). */
export interface GuestBoot {
  /** Names the guest in the messages about it. */
  id: string;
  /** Admitted module bytes (memory maximum already rewritten), from the admission cache. */
  modulePath: string;
  kind: 'module' | 'component';
  argv: string[];
  env: Record<string, string>;
  dirs: { host: string; guest: string; readonly: boolean }[];
  config: { guest: string; host: string }[];
  /** Byte quota across the writable directories (the disk grant), or null. */
  disk: number | null;
  /** The network grant with its connect targets parsed (by the host, once). */
  network: NetworkAccess;
  /** The gpu grant as the guest host enforces it (guest/gpu), absent without one. */
  gpu?: { memoryBytes: number; submitMs: number };
  /** V8 heap cap of the guest's worker thread (from the memory grant, host/grants/memory.ts), or null. */
  workerHeapMb: number | null;
  stdin: boolean;
  stdout: OutputTarget;
  stderr: OutputTarget;
  /** Where the guest host records how the guest ended (a file the host made for it), or null. */
  exitRecord: string | null;
}

/** What the host writes on the boot pipe. */
export interface HostBoot {
  type: 'boot';
  /** Agent mode: the guest host outlives its parent; otherwise it stops when the parent goes. */
  detached: boolean;
  guests: GuestBoot[];
}

/** Messages that reach the host about a guest host and its guests. */
export type GuestHostMessage =
  /** The guest host runs (launcher or bubblewrap), as this pid in the host's pid namespace. */
  | { type: 'ready'; pid: number }
  /** The launcher could not confine the guest host (no guest code ran). */
  | { type: 'refused'; message: string }
  /** The kernel OOM-killed the guest host's memory cgroup (the launcher read it before removing it). */
  | { type: 'oom' }
  /** How one guest ended (a violation carries its grant). */
  | { type: 'exit'; guest: string; exit: GuestExit };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

/** The boot options, read by the guest host; throws naming the field that is wrong. */
export function parseHostBoot(v: unknown): HostBoot {
  const fail = (field: string): never => {
    throw new TypeError(`boot options: ${field} is missing or malformed`);
  };
  if (!isObj(v) || v.type !== 'boot') return fail('type');
  if (typeof v.detached !== 'boolean') fail('detached');
  if (!Array.isArray(v.guests) || v.guests.length === 0) fail('guests');
  const guests = (v.guests as unknown[]).map((g, i) => parseGuestBoot(g, (f) => fail(`guests[${i}].${f}`)));
  return { type: 'boot', detached: v.detached as boolean, guests };
}

function parseGuestBoot(g: unknown, fail: (field: string) => never): GuestBoot {
  if (!isObj(g)) return fail('(guest)');
  for (const k of ['id', 'modulePath'] as const) if (typeof g[k] !== 'string') fail(k);
  if (g.kind !== 'module' && g.kind !== 'component') fail('kind');
  if (!isStrings(g.argv)) fail('argv');
  if (!isObj(g.env) || !Object.values(g.env).every((s) => typeof s === 'string')) fail('env');
  if (!Array.isArray(g.dirs) || !g.dirs.every((d) => isObj(d) && typeof d.host === 'string' && typeof d.guest === 'string' && typeof d.readonly === 'boolean')) fail('dirs');
  if (!Array.isArray(g.config) || !g.config.every((c) => isObj(c) && typeof c.host === 'string' && typeof c.guest === 'string')) fail('config');
  if (g.disk !== null && !isInt(g.disk, 0, Number.MAX_SAFE_INTEGER)) fail('disk');
  if (g.workerHeapMb !== null && !isInt(g.workerHeapMb, 1, 2 ** 20)) fail('workerHeapMb');
  if (g.gpu !== undefined && !(isObj(g.gpu) && isInt(g.gpu.memoryBytes, 1, Number.MAX_SAFE_INTEGER) && isInt(g.gpu.submitMs, 1, 2 ** 31 - 1))) fail('gpu');
  const n = g.network;
  if (!isObj(n) || !Array.isArray(n.listen) || !n.listen.every((p) => isInt(p, 0, 65535)) || !Array.isArray(n.connect) || !n.connect.every((t) => isObj(t) && typeof t.kind === 'string' && isInt(t.port, 1, 65535)) || typeof n.udp !== 'boolean') fail('network');
  if (typeof g.stdin !== 'boolean') fail('stdin');
  for (const k of ['stdout', 'stderr'] as const) if (!isOutput(g[k])) fail(k);
  if (g.exitRecord !== null && typeof g.exitRecord !== 'string') fail('exitRecord');
  return g as unknown as GuestBoot;
}

function isOutput(v: unknown): v is OutputTarget {
  return v === 'inherit' || v === 'pipe' || (isObj(v) && typeof v.file === 'string' && isInt(v.maxBytes, 1, Number.MAX_SAFE_INTEGER) && isInt(v.keep, 0, 1000));
}
