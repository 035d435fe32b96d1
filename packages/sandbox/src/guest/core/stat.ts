import type fs from 'node:fs';
import { reported } from './times.js';

export type FileType = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket' | 'unknown';

/** What every WASI layer reports about a file (times in nanoseconds since the epoch). */
export interface Stat {
  dev: bigint;
  ino: bigint;
  type: FileType;
  nlink: bigint;
  size: bigint;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export function typeOf(st: fs.BigIntStats | fs.Stats | fs.Dirent): FileType {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

export function toStat(st: fs.BigIntStats): Stat {
  return { dev: st.dev, ino: st.ino, type: typeOf(st), nlink: st.nlink, size: st.size, ...reported(st) };
}

/** A directory that exists only in the guest host (a config mount): no inode of its own. */
export const VIRTUAL_DIR: Stat = { dev: 0n, ino: 0n, type: 'dir', nlink: 1n, size: 0n, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };
