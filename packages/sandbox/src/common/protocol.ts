import type { GuestExit, NetworkAccess } from '@lowcloud/api';
import type { OutputTarget } from '../types.js';

/**
 * The contract between the host (the agent, `lowcloud run`) and a guest host process, both ways.
 * The host hands the guest host its boot options on a pipe (never a file: env values must not
 * reach the disk); the launcher (or bubblewrap) reports the guest host's pid and the kernel's OOM
 * kill on the report pipe; the guest host reports how each guest ended over its channel and in
 * its exit record. Every message is checked by a closed parse function where it is read: the
 * boot options here (the guest host loads nothing it does not need, no ajv: it must start fast),
 * the messages to the host in host/messages.ts.
 */

/** File descriptors of a guest host process; the same through the launcher and the wall. */
export const GUEST_HOST_FD = {
  /**
   * The channel, both ways (a socket pair; a shared guest host always, other guest hosts while
   * attached): one message a line (`encodeLine`), read with a bounded `Lines`. Not Node.js's IPC
   * channel: its reader throws a malformed message into the event loop (ten bytes written to fd 3
   * by code in a guest host ended the agent), and it buffers a message of any announced size.
   */
  channel: 3,
  /** Launcher / bubblewrap -> host: `ready` (the pid as the host sees it), `refused`, `oom`. */
  report: 4,
  /** The wall's seccomp program (bubblewrap reads it). */
  seccomp: 5,
  /** Host -> guest host: the boot options, one JSON document, then end of file. */
  boot: 6,
  /**
   * Guest host -> launcher: the exit record of a detached process guest host (a pipe; the launcher
   * writes what came, at most 16 KiB, to the run directory once the guest host has ended).
   */
  exit: 7,
} as const;

/** A config file: a host file bound read-only, or bytes (base64) the guest host serves from memory. */
export type BootConfigFile = { guest: string; host: string } | { guest: string; content: string };

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
  config: BootConfigFile[];
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
  /** The guest host writes the exit record to fd GUEST_HOST_FD.exit instead (nothing of the host's disk is writable in its wall). */
  exitFd?: boolean;
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
  /**
   * The guest host runs (launcher or bubblewrap), as this pid in the host's pid namespace; in a veth
   * namespace, with its host interface (`lcv<i>`, host/netns.ts), whose redirects a stop removes first.
   */
  | { type: 'ready'; pid: number; veth?: string }
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
  if (!Array.isArray(g.config) || !g.config.every((c) => isObj(c) && typeof c.guest === 'string' && (typeof c.host === 'string') !== (typeof c.content === 'string'))) fail('config');
  if (g.disk !== null && !isInt(g.disk, 0, Number.MAX_SAFE_INTEGER)) fail('disk');
  if (g.workerHeapMb !== null && !isInt(g.workerHeapMb, 1, 2 ** 20)) fail('workerHeapMb');
  if (g.gpu !== undefined && !(isObj(g.gpu) && isInt(g.gpu.memoryBytes, 1, Number.MAX_SAFE_INTEGER) && isInt(g.gpu.submitMs, 1, 2 ** 31 - 1))) fail('gpu');
  const n = g.network;
  if (!isObj(n) || !Array.isArray(n.listen) || !n.listen.every((p) => isInt(p, 0, 65535)) || !Array.isArray(n.connect) || !n.connect.every((t) => isObj(t) && typeof t.kind === 'string' && isInt(t.port, 1, 65535)) || typeof n.udp !== 'boolean') fail('network');
  if (typeof g.stdin !== 'boolean') fail('stdin');
  for (const k of ['stdout', 'stderr'] as const) if (!isOutput(g[k])) fail(k);
  if (g.exitRecord !== null && typeof g.exitRecord !== 'string') fail('exitRecord');
  if (g.exitFd !== undefined && typeof g.exitFd !== 'boolean') fail('exitFd');
  return g as unknown as GuestBoot;
}

/** A guest's output target as the guest hosts take it (a log file: at least one byte, at most 1,000 rotated files). */
export function isOutput(v: unknown): v is OutputTarget {
  return v === 'inherit' || v === 'pipe' || (isObj(v) && typeof v.file === 'string' && isInt(v.maxBytes, 1, Number.MAX_SAFE_INTEGER) && isInt(v.keep, 0, 1000));
}

/**
 * A shared guest host (guest/shared.ts) carries many guests and is told about them one by one over
 * its channel (module bytes as base64). It writes no file: each guest's output and exit come back
 * over the channel, and the host side writes the logs and exit records outside the wall.
 */
export type SharedHostRequest =
  /** Run one more guest. `module` is sent once per digest; later guests of the digest reuse its compiled module. */
  | { type: 'add'; guest: GuestBoot; digest: string; module: Uint8Array | null }
  /** Stop one guest (it ends at its next WASI call, or now when it waits in one). */
  | { type: 'stop'; guest: string }
  /** Report one guest's linear memory and CPU time. */
  | { type: 'usage'; guest: string; seq: number }
  /** No guests left and none will come: exit. */
  | { type: 'close' }
  /** A re-attached host side on the control FIFOs: which guests still run, and the exits it missed. */
  | { type: 'hello' };

/** What a shared guest host sends back (parsed closed by the host: host/messages.ts). */
export type SharedHostReply =
  /** Running, and how it runs its guests: suspended between WASI calls on one thread (JSPI), or a worker thread each. */
  | { type: 'hello'; jspi: boolean }
  /** The guest's code runs. */
  | { type: 'started'; guest: string }
  /** Bytes the guest wrote to its stdout (1) or stderr (2). */
  | { type: 'out'; guest: string; fd: 1 | 2; data: Uint8Array }
  | { type: 'usage'; guest: string; seq: number; memoryBytes: number; cpuSeconds: number | null }
  /** How one guest ended, with its exit status. */
  | { type: 'exit'; guest: string; exit: GuestExit; status: number }
  /** The answer to `hello` (the exits missed follow as `exit` messages). */
  | { type: 'live'; guests: string[] };

/**
 * The control FIFOs of a detached shared guest host, in a directory the host side made and the
 * wall binds read-only: once the starter's channel is gone, a re-attaching host side writes
 * requests to `req` and reads replies from `rep`, in the channel's lines.
 */
export const SHARED_CTL = { requests: 'req', replies: 'rep' } as const;

/** A request to a shared guest host; throws naming what is wrong (the host side is trusted, still checked). */
export function parseSharedHostRequest(v: unknown): SharedHostRequest {
  const fail = (field: string): never => {
    throw new TypeError(`shared host request: ${field} is missing or malformed`);
  };
  if (!isObj(v)) return fail('(message)');
  switch (v.type) {
    case 'add':
      if (typeof v.digest !== 'string') fail('digest');
      if (v.module !== null && !(v.module instanceof Uint8Array)) fail('module');
      return { type: 'add', guest: parseGuestBoot(v.guest, (f) => fail(`guest.${f}`)), digest: v.digest as string, module: v.module as Uint8Array | null };
    case 'stop':
      return typeof v.guest === 'string' ? { type: 'stop', guest: v.guest } : fail('guest');
    case 'usage':
      return typeof v.guest === 'string' && isInt(v.seq, 0, Number.MAX_SAFE_INTEGER) ? { type: 'usage', guest: v.guest, seq: v.seq } : fail('guest');
    case 'close':
      return { type: 'close' };
    case 'hello':
      return { type: 'hello' };
    default:
      return fail('type');
  }
}

/**
 * A request to a detached `process` guest host on its control FIFOs (`SHARED_CTL` names, in its
 * run directory): its one guest started again with a new boot (new config files, sent as their
 * bytes; the same binary, grants and directories), in the same process: a replace-config in place.
 * The host answers with the old guest's `exit` and the new one's `started` (`SharedHostReply`).
 */
export type ProcessHostRequest = { type: 'restart'; guest: GuestBoot };

/** A request to a process guest host; throws naming what is wrong (the host side is trusted, still checked). */
export function parseProcessHostRequest(v: unknown): ProcessHostRequest {
  const fail = (field: string): never => {
    throw new TypeError(`process host request: ${field} is missing or malformed`);
  };
  if (!isObj(v) || v.type !== 'restart') return fail('type');
  return { type: 'restart', guest: parseGuestBoot(v.guest, (f) => fail(`guest.${f}`)) };
}

/** One message as a line of the channel and the control FIFOs: JSON, byte arrays as `{ "$b64": ... }`. */
export function encodeLine(m: SharedHostRequest | SharedHostReply | GuestHostMessage | ProcessHostRequest): string {
  // The value before its toJSON (a Buffer's is `{ type: 'Buffer', data: [...] }`).
  return `${JSON.stringify(m, function (this: Record<string, unknown>, k: string, v: unknown) {
    const o = this[k];
    return o instanceof Uint8Array ? { $b64: Buffer.from(o.buffer, o.byteOffset, o.byteLength).toString('base64') } : v;
  })}\n`;
}

/** A line back to a message to parse (closed parsers check the rest); throws on bad JSON. */
export function decodeLine(line: string): unknown {
  return JSON.parse(line, (_k, v: unknown) => (isObj(v) && typeof v.$b64 === 'string' && Object.keys(v).length === 1 ? new Uint8Array(Buffer.from(v.$b64, 'base64')) : v));
}

/** A guest's output travels in pieces of at most this many bytes (a line stays well under `Lines`' default cap). */
export const OUT_PIECE_BYTES = 2 ** 20;

/**
 * Splits a text stream into lines, bounded: a line longer than `max` characters is dropped whole,
 * and what is kept of a line never passes `max`. Each character is looked at once (a hostile
 * writer cannot make the reader rescan what it buffered).
 */
export class Lines {
  private parts: string[] = [];
  private size = 0;
  private skipping = false;
  constructor(private readonly max = 4 * 2 ** 20) {}
  push(chunk: string): string[] {
    const out: string[] = [];
    let from = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', from)) {
      const piece = chunk.slice(from, nl);
      if (!this.skipping && this.size + piece.length <= this.max) {
        const line = this.parts.length === 0 ? piece : this.parts.join('') + piece;
        if (line.length > 0) out.push(line);
      }
      this.parts = [];
      this.size = 0;
      this.skipping = false;
      from = nl + 1;
    }
    const tail = chunk.slice(from);
    if (this.skipping || tail.length === 0) return out;
    if (this.size + tail.length > this.max) {
      this.parts = [];
      this.size = 0;
      this.skipping = true;
    } else {
      this.parts.push(tail);
      this.size += tail.length;
    }
    return out;
  }
}
