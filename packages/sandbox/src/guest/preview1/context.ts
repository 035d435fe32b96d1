import type { GuestDir } from '../core/dir.js';
import { Errno, errnoOf, WasiError } from '../core/errno.js';
import type { HostFile } from '../core/file.js';
import type { Stat } from '../core/stat.js';
import { checkPathLength } from '../core/walk.js';
import { GuestExit } from '../exit.js';
import type { GuestMemory } from './memory.js';

/** What a preview1 descriptor number stands for. Renumbering moves the same object. */
export type Entry =
  | { type: 'stdio'; n: 0 | 1 | 2 }
  | { type: 'dir'; dir: GuestDir; preopen: string | null; listing: { name: string; type: number; ino: bigint }[] | null }
  | { type: 'file'; file: HostFile; pos: number; fdflags: number };

/** A WASI call; a promise only where a shared guest host suspends the guest in it (JSPI). */
export type Syscall = (...a: never[]) => number | void | Promise<number>;

export interface Preview1Io {
  stdout: (b: Uint8Array) => void;
  stderr: (b: Uint8Array) => void;
  /** Read from the host's stdin, or null when stdin is not granted. */
  stdin: ((b: Uint8Array) => number) | null;
}

export const FILETYPE = { unknown: 0, block: 1, char: 2, dir: 3, file: 4, socketStream: 6, symlink: 7 } as const;
export const filetypeOf = (t: Stat['type']): number =>
  t === 'dir' ? FILETYPE.dir : t === 'file' ? FILETYPE.file : t === 'symlink' ? FILETYPE.symlink : t === 'char' ? FILETYPE.char : t === 'block' ? FILETYPE.block : t === 'socket' ? FILETYPE.socketStream : FILETYPE.unknown;

export const FDFLAG = { append: 1, dsync: 2, nonblock: 4, rsync: 8, sync: 16 } as const;

/** The guest's descriptor table and memory, shared by the files of each WASI interface. */
export class Preview1Context {
  readonly fds = new Map<number, Entry>([
    [0, { type: 'stdio', n: 0 }],
    [1, { type: 'stdio', n: 1 }],
    [2, { type: 'stdio', n: 2 }],
  ]);
  private nextFd = 3;

  constructor(
    readonly mem: GuestMemory,
    readonly io: Preview1Io,
  ) {}

  add(e: Entry): number {
    while (this.fds.has(this.nextFd)) this.nextFd++;
    this.fds.set(this.nextFd, e);
    return this.nextFd++;
  }

  entry(fd: number): Entry {
    const e = this.fds.get(fd);
    if (e === undefined) throw new WasiError(Errno.BADF);
    return e;
  }

  dir(fd: number): Extract<Entry, { type: 'dir' }> {
    const e = this.entry(fd);
    if (e.type !== 'dir') throw new WasiError(Errno.NOTDIR);
    return e;
  }

  /** A file descriptor for a call that needs one: a directory is EISDIR, stdio ESPIPE/EBADF. */
  file(fd: number, stdio: number = Errno.SPIPE): Extract<Entry, { type: 'file' }> {
    const e = this.entry(fd);
    if (e.type === 'file') return e;
    throw new WasiError(e.type === 'dir' ? Errno.ISDIR : stdio);
  }

  path(ptr: number, len: number): string {
    checkPathLength(len);
    return this.mem.string(ptr, len);
  }

  writeStat(ptr: number, st: Stat): void {
    const v = this.mem.view;
    v.setBigUint64(ptr, st.dev, true);
    v.setBigUint64(ptr + 8, st.ino, true);
    v.setBigUint64(ptr + 16, 0n, true);
    v.setUint8(ptr + 16, filetypeOf(st.type));
    v.setBigUint64(ptr + 24, st.nlink, true);
    v.setBigUint64(ptr + 32, st.size, true);
    v.setBigUint64(ptr + 40, st.atimeNs, true);
    v.setBigUint64(ptr + 48, st.mtimeNs, true);
    v.setBigUint64(ptr + 56, st.ctimeNs, true);
  }
}

/** Wrap a syscall so any failure becomes an errno for the guest, never an exception in the host. */
export const sys =
  <A extends unknown[], R extends number | void | Promise<number>>(f: (...a: A) => R) =>
  (...a: A): number | Exclude<R, number | void> => {
    try {
      return (f(...a) ?? Errno.SUCCESS) as number | Exclude<R, number | void>;
    } catch (err) {
      if (err instanceof GuestExit) throw err;
      return errnoOf(err);
    }
  };

/** A 64-bit guest offset or length as a safe JS number, EINVAL past 2^53. */
export function safe(n: bigint): number {
  if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) throw new WasiError(Errno.INVAL);
  return Number(n);
}
