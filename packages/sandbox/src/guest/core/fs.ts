import fs from 'node:fs';
import path from 'node:path';
import { Errno, WasiError } from './errno.js';

/**
 * The filesystem enforcement core, shared by every WASI layer: what the guest may see (preopens),
 * how its paths resolve (never outside a preopen), and how many bytes it may add (disk quota).
 * Synchronous on purpose: it runs in the guest's dedicated child process, where blocking calls are
 * safe and ~50x cheaper than a round trip to an I/O worker.
 *
 * Symlink rule: the guest never follows a symlink and cannot make one, nor a hard link. A host-
 * planted link to the outside is therefore inert, and no link the guest could make exists. `..`
 * cannot climb above a preopen, and absolute paths are refused.
 */

export interface Mount {
  /** The path the guest sees, e.g. `/data` or `data`. */
  guest: string;
  /** A host directory, or for config mounts a map of file name -> host file. */
  host: string | Map<string, string>;
  readonly: boolean;
}

export class DiskQuota {
  constructor(
    public used: number,
    readonly limit: number,
  ) {}

  /** Charge `bytes` of growth; throws EDQUOT (the guest sees "Disk quota exceeded") past the limit. */
  charge(bytes: number): void {
    if (bytes <= 0) return;
    if (this.used + bytes > this.limit) throw new WasiError(Errno.DQUOT, 'disk quota exceeded');
    this.used += bytes;
  }

  credit(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/** Bytes under a directory, counted without following symlinks (a link to / must not count /). */
export function usageOf(dir: string): number {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop() as string;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) total += fs.lstatSync(p).size;
    }
  }
  return total;
}

export type Resolved =
  | { kind: 'host'; path: string; mount: Mount }
  /** A file of a config mount (read-only) or the config mount's directory itself. */
  | { kind: 'config-file'; path: string; mount: Mount }
  | { kind: 'config-dir'; mount: Mount };

/**
 * Resolve `rel` against `base` (a path inside `mount`, as components) without leaving the mount.
 * Every existing component is lstat'ed: a symlink anywhere on the way is refused.
 */
export function resolvePath(mount: Mount, base: readonly string[], rel: string): { resolved: Resolved; parts: string[] } {
  if (rel.startsWith('/')) throw new WasiError(Errno.NOTCAPABLE, 'absolute paths are not allowed');
  if (rel.includes('\0')) throw new WasiError(Errno.INVAL);
  const parts = [...base];
  for (const seg of rel.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) throw new WasiError(Errno.NOTCAPABLE, 'path escapes its directory');
      parts.pop();
      continue;
    }
    parts.push(seg);
  }
  if (typeof mount.host !== 'string') {
    if (parts.length === 0) return { resolved: { kind: 'config-dir', mount }, parts };
    const file = parts.length === 1 ? mount.host.get(parts[0] as string) : undefined;
    if (file === undefined) throw new WasiError(Errno.NOENT);
    return { resolved: { kind: 'config-file', path: file, mount }, parts };
  }
  let cur = mount.host;
  for (const seg of parts) {
    cur = path.join(cur, seg);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
      throw err;
    }
    if (st.isSymbolicLink()) throw new WasiError(Errno.NOTCAPABLE, 'symlinks are not followed');
  }
  return { resolved: { kind: 'host', path: path.join(mount.host, ...parts), mount }, parts };
}
