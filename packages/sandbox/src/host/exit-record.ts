import fs from 'node:fs';
import path from 'node:path';
import type { GuestExit } from '../types.js';

/**
 * The guest host's exit record (runDir/exit.json). The guest host writes it, so for the host it is
 * hostile input: read without following links, bounded, and only a well-formed exit is believed.
 */
export function readExitRecord(runDir: string): GuestExit | null {
  let text: string;
  try {
    const fd = fs.openSync(path.join(runDir, 'exit.json'), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    try {
      if (!fs.fstatSync(fd).isFile()) return null;
      const buf = Buffer.alloc(16 * 1024);
      text = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null; // no record: the guest host did not finish
  }
  return parseExitRecord(text);
}

export function parseExitRecord(text: string): GuestExit | null {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return null; // empty (not finished) or cut short (died while writing it)
  }
  if (typeof r !== 'object' || r === null) return null;
  const o = r as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 4096) : null);
  switch (o.kind) {
    case 'exit':
      return Number.isInteger(o.code) && (o.code as number) >= 0 && (o.code as number) <= 255 ? { kind: 'exit', code: o.code as number } : null;
    case 'trap':
      return str(o.message) === null ? null : { kind: 'trap', message: str(o.message) as string };
    case 'signal':
      return str(o.signal) === null ? null : { kind: 'signal', signal: str(o.signal) as string };
    case 'violation':
      return ['memory', 'cpu', 'disk', 'network'].includes(o.grant as string) && str(o.detail) !== null
        ? { kind: 'violation', grant: o.grant as 'memory' | 'cpu' | 'disk' | 'network', detail: str(o.detail) as string }
        : null;
    case 'stopped':
      return { kind: 'stopped' };
    default:
      return null;
  }
}

/**
 * Make (or empty) a file the guest host writes, owned by its uid, without following a link: the
 * host creates every file the wall lets the guest host write, so the guest host can change its
 * contents but never what it is.
 */
export function prepareGuestFile(file: string, uid: number | null, truncate: boolean): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | (truncate ? fs.constants.O_TRUNC : 0), 0o600);
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error(`${file} is not a regular file`);
    if (uid !== null) fs.fchownSync(fd, uid, uid);
    fs.fchmodSync(fd, 0o600);
  } finally {
    fs.closeSync(fd);
  }
}
