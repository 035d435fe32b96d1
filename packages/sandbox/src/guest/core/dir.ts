import fs from 'node:fs';
import { Errno, WasiError } from './errno.js';
import { HostFile } from './file.js';
import type { Ledger } from './ledger.js';
import { MemoryFile } from './memory-file.js';
import { toStat, typeOf, VIRTUAL_DIR, type FileType, type Stat } from './stat.js';
import { setTimes, type NewTime } from './times.js';
import { at, checkPathLength, checkProc, locate, type Located } from './walk.js';

/**
 * Directories as every WASI layer sees them: a host directory held by a descriptor (paths resolve
 * below it only, see walk.ts), or a config mount (a virtual directory of granted read-only files).
 * preview1's fd table and the component's Descriptor resources are thin views over these.
 */

export interface OpenRequest {
  /** Follow a symlink in the final component. */
  follow: boolean;
  create: boolean;
  exclusive: boolean;
  truncate: boolean;
  directory: boolean;
  read: boolean;
  write: boolean;
  append: boolean;
  /** O_SYNC / O_DSYNC on the host descriptor. */
  sync: 'none' | 'data' | 'full';
}

export interface DirEntry {
  name: string;
  type: FileType;
  ino: bigint;
}

export type GuestDir = HostDir | ConfigDir;
export type Opened = GuestDir | HostFile;

const O_NOFOLLOW = fs.constants.O_NOFOLLOW;
/** A host-planted FIFO must not block the guest host in open(2). */
const O_NONBLOCK = fs.constants.O_NONBLOCK;

export class HostDir {
  readonly kind = 'dir';
  private closed = false;

  constructor(
    readonly fd: number,
    readonly readonly: boolean,
    private readonly ledger: Ledger,
  ) {}

  /** A preopen: the operator's directory, opened once; everything the guest reaches is below it. */
  static openRoot(hostPath: string, readonly: boolean, ledger: Ledger): HostDir {
    const fd = fs.openSync(hostPath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    checkProc(fd);
    return new HostDir(fd, readonly, ledger);
  }

  open(rel: string, r: OpenRequest): Opened {
    if (this.readonly && (r.write || r.create || r.truncate)) throw new WasiError(Errno.ROFS);
    return this.within(rel, r.follow, (loc) => {
      // A trailing slash would make the kernel follow a symlink swapped in after the walk checked
      // the name: open the bare name as a directory instead (with O_CREAT the slash is kept: the
      // kernel then fails EISDIR before any lookup that could follow).
      const dirOnly = loc.name.endsWith('/') && !r.create;
      const p = dirOnly ? at(loc.dir, loc.name.slice(0, -1)) : at(loc.dir, loc.name);
      const access = r.write ? (r.read ? fs.constants.O_RDWR : fs.constants.O_WRONLY) : fs.constants.O_RDONLY;
      const flags = access | O_NOFOLLOW | O_NONBLOCK | (r.directory || dirOnly ? fs.constants.O_DIRECTORY : 0) | (r.append ? fs.constants.O_APPEND : 0) | (r.sync === 'full' ? fs.constants.O_SYNC : r.sync === 'data' ? fs.constants.O_DSYNC : 0);
      let fd: number;
      let created = false;
      if (r.create) {
        try {
          fd = this.ledger.entry(() => fs.openSync(p, flags | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644));
          created = true;
        } catch (err) {
          if (r.exclusive || (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          fd = fs.openSync(p, flags);
        }
      } else fd = fs.openSync(p, flags);
      // `fd` is closed here unless a HostDir or HostFile took it.
      let owned = true;
      try {
        const st = fs.fstatSync(fd);
        if (st.isDirectory()) {
          if (r.truncate) throw new WasiError(Errno.ISDIR);
          owned = false;
          return new HostDir(fd, this.readonly, this.ledger);
        }
        if (r.directory) throw new WasiError(Errno.NOTDIR);
        const rec = this.ledger.open(st);
        const file = new HostFile(fd, rec, this.ledger, r.read || !r.write, r.write, r.append, this.readonly);
        owned = false;
        if (r.truncate && !created && rec.size > 0) {
          const before = rec.size;
          try {
            this.ledger.resize(rec, 0);
            // Through the descriptor we hold, also when it is read-only (as O_TRUNC would).
            if (r.write) fs.ftruncateSync(fd, 0);
            else fs.truncateSync(at(fd), 0);
          } catch (err) {
            this.ledger.resize(rec, before);
            file.close();
            throw err;
          }
        }
        return file;
      } finally {
        if (owned) fs.closeSync(fd);
      }
    });
  }

  mkdir(rel: string): void {
    this.writable();
    this.within(rel, false, (loc) => this.ledger.entry(() => fs.mkdirSync(at(loc.dir, loc.name))));
  }

  rmdir(rel: string): void {
    this.writable();
    this.within(rel, false, (loc) => {
      const p = at(loc.dir, loc.name);
      // The ledger's view of what goes: through the bare name, never a swapped-in link (see lstatBare).
      const st = lstatOrNull(at(loc.dir, bare(loc.name)));
      fs.rmdirSync(p);
      if (st !== null) this.ledger.removed(st);
    });
  }

  unlink(rel: string): void {
    this.writable();
    this.within(rel, false, (loc) => {
      const p = at(loc.dir, loc.name);
      const st = fs.lstatSync(at(loc.dir, bare(loc.name)));
      if (st.isDirectory()) throw new WasiError(Errno.ISDIR);
      fs.unlinkSync(p);
      this.ledger.removed(st);
    });
  }

  rename(rel: string, to: GuestDir, toRel: string): void {
    this.writable();
    const dest = writableHost(to);
    this.within(rel, false, (src) =>
      dest.within(toRel, false, (dst) => {
        const from = at(src.dir, src.name);
        const into = at(dst.dir, dst.name);
        const a = fs.lstatSync(at(src.dir, bare(src.name)));
        const b = lstatOrNull(at(dst.dir, bare(dst.name)));
        fs.renameSync(from, into);
        // What the rename replaced is gone (a rename onto another name of the same file changes nothing).
        if (b !== null && !(a.dev === b.dev && a.ino === b.ino)) this.ledger.removed(b);
      }),
    );
  }

  symlink(target: string, rel: string): void {
    this.writable();
    checkPathLength(target);
    if (target.includes('\0')) throw new WasiError(Errno.INVAL);
    // As wasmtime: a link to an absolute path could only ever be refused when followed; refuse it now.
    if (target.startsWith('/')) throw new WasiError(Errno.PERM, 'a symlink to an absolute path');
    this.within(rel, false, (loc) => this.ledger.entry(() => fs.symlinkSync(target, at(loc.dir, loc.name))));
  }

  link(rel: string, follow: boolean, to: GuestDir, toRel: string): void {
    this.writable();
    const dest = writableHost(to);
    this.within(rel, follow, (src) => dest.within(toRel, false, (dst) => this.ledger.entry(() => fs.linkSync(at(src.dir, src.name), at(dst.dir, dst.name)))));
  }

  readlink(rel: string): Buffer {
    return this.within(rel, false, (loc) => fs.readlinkSync(at(loc.dir, loc.name), { encoding: 'buffer' }));
  }

  stat(rel: string, follow: boolean): Stat {
    return this.within(rel, follow, (loc) => toStat(lstatBare(loc)));
  }

  setTimes(rel: string, follow: boolean, atime: NewTime, mtime: NewTime): void {
    this.writable();
    this.within(rel, follow, (loc) => {
      lstatBare(loc);
      setTimes({ path: at(loc.dir, bare(loc.name)), follow: false }, atime, mtime);
    });
  }

  statSelf(): Stat {
    return toStat(fs.fstatSync(this.fd, { bigint: true }));
  }

  setTimesSelf(atime: NewTime, mtime: NewTime): void {
    this.writable();
    setTimes({ fd: this.fd }, atime, mtime);
  }

  /** Entries with `.` and `..` first, then by name; inode numbers from lstat, as d_ino must match. */
  list(): DirEntry[] {
    const self = fs.fstatSync(this.fd, { bigint: true });
    let parentIno = self.ino;
    try {
      parentIno = fs.statSync(at(this.fd, '..'), { bigint: true }).ino;
    } catch {
      // the directory was removed; `..` then reports its own inode
    }
    const out: DirEntry[] = [
      { name: '.', type: 'dir', ino: self.ino },
      { name: '..', type: 'dir', ino: parentIno },
    ];
    for (const name of fs.readdirSync(at(this.fd)).sort()) {
      try {
        const st = fs.lstatSync(at(this.fd, name), { bigint: true });
        out.push({ name, type: typeOf(st), ino: st.ino });
      } catch {
        // removed between readdir and lstat: it is not there any more
      }
    }
    return out;
  }

  sync(): void {
    fs.fsyncSync(this.fd);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  /** Run `f` on the located path, then close what the walk opened. */
  within<T>(rel: string, follow: boolean, f: (loc: Located) => T): T {
    const loc = locate(this.fd, rel, follow);
    try {
      return f(loc);
    } finally {
      loc.release();
    }
  }

  private writable(): void {
    if (this.readonly) throw new WasiError(Errno.ROFS);
  }
}

function writableHost(d: GuestDir): HostDir {
  if (d.kind !== 'dir' || d.readonly) throw new WasiError(Errno.ROFS);
  return d;
}

/** `name` without the trailing slash the guest may have written (`./` stays `.`). */
const bare = (name: string) => (name.endsWith('/') ? name.slice(0, -1) : name);

/**
 * lstat of the located name, never through a trailing slash: `x/` would make the kernel follow
 * `x` if a concurrent guest swapped a symlink in after the walk read it (out of the directory).
 * The slash's own meaning is kept: it must name a directory.
 */
function lstatBare(loc: Located): fs.BigIntStats {
  const st = fs.lstatSync(at(loc.dir, bare(loc.name)), { bigint: true });
  if (loc.name.endsWith('/') && !st.isDirectory()) throw new WasiError(Errno.NOTDIR);
  return st;
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * A config mount: a directory that holds exactly the granted files (read-only, the operator's own
 * paths, or bytes held in memory: an opened secret), and nothing else; no subdirectories, no `..`
 * out of it.
 */
export class ConfigDir {
  readonly kind = 'config';
  readonly readonly = true;

  constructor(
    private readonly files: Map<string, string | Uint8Array>,
    private readonly ledger: Ledger,
  ) {}

  private name(rel: string): string | null {
    checkPathLength(rel);
    if (rel.includes('\0')) throw new WasiError(Errno.INVAL);
    if (rel.startsWith('/')) throw new WasiError(Errno.NOTCAPABLE, 'absolute paths are not allowed');
    const parts: string[] = [];
    for (const seg of rel.split('/')) {
      if (seg === '' || seg === '.') continue;
      if (seg === '..') {
        if (parts.pop() === undefined) throw new WasiError(Errno.NOTCAPABLE, 'path escapes its directory');
      } else parts.push(seg);
    }
    if (parts.length === 0) return null;
    if (parts.length > 1 || !this.files.has(parts[0] as string)) throw new WasiError(parts.length > 1 && this.files.has(parts[0] as string) ? Errno.NOTDIR : Errno.NOENT);
    return parts[0] as string;
  }

  open(rel: string, r: OpenRequest): Opened {
    if (r.write || r.create || r.truncate) throw new WasiError(Errno.ROFS);
    const name = this.name(rel);
    if (name === null) return this;
    if (r.directory) throw new WasiError(Errno.NOTDIR);
    const file = this.files.get(name) as string | Uint8Array;
    if (typeof file !== 'string') return new MemoryFile(file, this.ledger);
    const fd = fs.openSync(file, fs.constants.O_RDONLY | O_NONBLOCK);
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      fs.closeSync(fd);
      throw new WasiError(Errno.ACCES, 'a config file must be a regular file');
    }
    return new HostFile(fd, this.ledger.open(st), this.ledger, true, false, false, true);
  }

  stat(rel: string): Stat {
    const name = this.name(rel);
    if (name === null) return VIRTUAL_DIR;
    const file = this.files.get(name) as string | Uint8Array;
    return typeof file === 'string' ? toStat(fs.statSync(file, { bigint: true })) : MemoryFile.stat(file);
  }

  statSelf(): Stat {
    return VIRTUAL_DIR;
  }

  list(): DirEntry[] {
    const out: DirEntry[] = [
      { name: '.', type: 'dir', ino: 0n },
      { name: '..', type: 'dir', ino: 0n },
    ];
    for (const n of [...this.files.keys()].sort()) {
      let ino = 0n;
      const file = this.files.get(n) as string | Uint8Array;
      try {
        if (typeof file === 'string') ino = fs.statSync(file, { bigint: true }).ino;
      } catch {
        // a missing config file still lists; opening it reports the error
      }
      out.push({ name: n, type: 'file', ino });
    }
    return out;
  }

  readlink(rel: string): Buffer {
    this.name(rel);
    throw new WasiError(Errno.INVAL);
  }

  close(): void {
    // nothing held
  }
}

