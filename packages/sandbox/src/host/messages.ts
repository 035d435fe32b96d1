import { GRANTS, type Grant } from '@lowcloud/api';
import type { GuestHostMessage, SharedHostReply } from '../common/protocol.js';
import type { GuestExit } from '../types.js';
import { VETH_INTERFACE } from './netns.js';

/**
 * The messages that reach the host about a guest host (common/protocol.ts), parsed closed where
 * they are read: from the guest host (IPC, exit records) and the launcher (the report pipe) they
 * are hostile input, and only a well-formed message is believed.
 */
const MAX_TEXT = 4096;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown): string | null => (typeof v === 'string' ? v.slice(0, MAX_TEXT) : null);
const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/** A guest's exit as the guest host reported it, or null when it is not one (hostile input). */
export function parseGuestExit(v: unknown): GuestExit | null {
  if (!isObj(v)) return null;
  switch (v.kind) {
    case 'exit':
      return isInt(v.code, 0, 255) ? { kind: 'exit', code: v.code } : null;
    case 'trap':
      return text(v.message) === null ? null : { kind: 'trap', message: text(v.message) as string };
    case 'signal':
      return text(v.signal) === null ? null : { kind: 'signal', signal: text(v.signal) as string };
    case 'violation':
      return (GRANTS as readonly string[]).includes(v.grant as string) && text(v.detail) !== null ? { kind: 'violation', grant: v.grant as Grant, detail: text(v.detail) as string } : null;
    case 'stopped':
      return { kind: 'stopped' };
    default:
      return null;
  }
}

/**
 * A message about a guest host, or null when it is not one. Bubblewrap's own `--info-fd` report
 * (`{"child-pid": N, ...}`) is its `ready`.
 */
export function parseGuestHostMessage(v: unknown): GuestHostMessage | null {
  if (!isObj(v)) return null;
  if ('child-pid' in v) return isInt(v['child-pid'], 1, 2 ** 22) ? { type: 'ready', pid: v['child-pid'] } : null;
  switch (v.type) {
    case 'ready':
      if (!isInt(v.pid, 1, 2 ** 22)) return null;
      if (v.veth === undefined) return { type: 'ready', pid: v.pid };
      return typeof v.veth === 'string' && VETH_INTERFACE.test(v.veth) ? { type: 'ready', pid: v.pid, veth: v.veth } : null;
    case 'refused':
      return text(v.message) === null ? null : { type: 'refused', message: text(v.message) as string };
    case 'oom':
      return { type: 'oom' };
    case 'exit': {
      const exit = parseGuestExit(v.exit);
      return typeof v.guest === 'string' && exit !== null ? { type: 'exit', guest: v.guest, exit } : null;
    }
    default:
      return null;
  }
}

/** A message from a shared guest host (guest/shared.ts), or null when it is not one (hostile input). */
export function parseSharedHostReply(v: unknown): SharedHostReply | null {
  if (!isObj(v)) return null;
  const guest = typeof v.guest === 'string' ? v.guest : null;
  switch (v.type) {
    case 'hello':
      return typeof v.jspi === 'boolean' ? { type: 'hello', jspi: v.jspi } : null;
    case 'started':
      return guest === null ? null : { type: 'started', guest };
    case 'out':
      return guest !== null && (v.fd === 1 || v.fd === 2) && v.data instanceof Uint8Array ? { type: 'out', guest, fd: v.fd, data: v.data } : null;
    case 'usage':
      return guest !== null && isInt(v.seq, 0, Number.MAX_SAFE_INTEGER) && isInt(v.memoryBytes, 0, Number.MAX_SAFE_INTEGER) && (v.cpuSeconds === null || (Number.isFinite(v.cpuSeconds) && (v.cpuSeconds as number) >= 0))
        ? { type: 'usage', guest, seq: v.seq, memoryBytes: v.memoryBytes, cpuSeconds: v.cpuSeconds as number | null }
        : null;
    case 'exit': {
      const exit = parseGuestExit(v.exit);
      return guest !== null && exit !== null && isInt(v.status, 0, 255) ? { type: 'exit', guest, exit, status: v.status } : null;
    }
    case 'live':
      return Array.isArray(v.guests) && v.guests.length <= 100_000 && v.guests.every((g) => typeof g === 'string') ? { type: 'live', guests: v.guests as string[] } : null;
    default:
      return null;
  }
}

/**
 * Splits a byte stream of JSON documents written one after another (bubblewrap's pretty-printed
 * report, then the launcher's one-line messages) into documents, by bracket depth outside strings.
 * Bounded: a stream that does not close a document within `max` characters is cut off.
 */
export class JsonDocuments {
  private doc = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private stray = '';

  constructor(private readonly max = 16 * 1024) {}

  /** Feed text; returns each complete document, parsed (or the `Error` of one that does not parse). */
  push(chunk: string): unknown[] {
    const out: unknown[] = [];
    for (const c of chunk) {
      if (this.depth === 0) {
        if (c === '{' || c === '[') {
          this.depth = 1;
          this.doc = c;
        } else if (this.stray.length < this.max) this.stray += c;
        continue;
      }
      this.doc += c;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') this.depth++;
      else if ((c === '}' || c === ']') && --this.depth === 0) out.push(parseJson(this.doc));
      if (this.doc.length > this.max) {
        out.push(new Error('unreadable report: a document longer than the limit'));
        this.depth = 0;
        this.inString = false;
        this.escaped = false;
      }
    }
    return out;
  }

  /** Text outside any document (what a failing tool wrote instead). */
  get rest(): string {
    return this.stray.trim();
  }
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}
