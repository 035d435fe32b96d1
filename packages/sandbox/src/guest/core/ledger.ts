import type fs from 'node:fs';
import { ENTRY_BYTES } from '../../common/usage.js';
import { Errno, WasiError } from './errno.js';

/** One file (an inode) as the quota sees it: the one place that owns its size. */
export interface FileRecord {
  readonly key: string;
  /** Bytes charged for the file's contents: its size (holes of a sparse file included). */
  size: number;
  /** Open descriptors of this guest on it. */
  opens: number;
  /** False once its last name is gone: its bytes stay charged until its last descriptor closes. */
  linked: boolean;
}

/**
 * The disk quota, exact by construction: a guest is charged ENTRY_BYTES for every directory entry
 * it holds (file, directory, symlink, hard link) and, once per file, that file's size. Every
 * descriptor of a file shares its FileRecord, so a truncation through one is seen by all, an
 * append lands at the real end, and a file unlinked while open stays charged until it is closed.
 * Sizes are charged before the bytes land; a failed call gives its charge back.
 *
 * Limit is Infinity without a disk grant: the records still give every descriptor the true size.
 */
export class Ledger {
  private readonly files = new Map<string, FileRecord>();

  constructor(
    public used: number,
    readonly limit: number,
  ) {}

  /** Charge `bytes`; throws EDQUOT (the guest sees "Disk quota exceeded") past the limit. */
  charge(bytes: number): void {
    if (bytes <= 0) return;
    if (this.used + bytes > this.limit) throw new WasiError(Errno.DQUOT, 'disk quota exceeded');
    this.used += bytes;
  }

  credit(bytes: number): void {
    if (bytes > 0) this.used = Math.max(0, this.used - bytes);
  }

  /** The record of an opened file (from its fstat), shared with every other descriptor on it. */
  open(st: fs.Stats): FileRecord {
    const key = `${st.dev}:${st.ino}`;
    let rec = this.files.get(key);
    if (rec === undefined) {
      rec = { key, size: st.size, opens: 0, linked: st.nlink > 0 };
      this.files.set(key, rec);
    }
    rec.opens++;
    return rec;
  }

  close(rec: FileRecord): void {
    if (--rec.opens > 0) return;
    this.files.delete(rec.key);
    if (!rec.linked) this.credit(rec.size);
  }

  /** Set a file's size (truncate, extend, write past the end), charging or crediting the change. */
  resize(rec: FileRecord, size: number): void {
    if (size > rec.size) this.charge(size - rec.size);
    else this.credit(rec.size - size);
    rec.size = size;
  }

  /** A new entry is about to be made: charge it first (and `undo` if making it failed). */
  entry<T>(make: () => T): T {
    this.charge(ENTRY_BYTES);
    try {
      return make();
    } catch (err) {
      this.credit(ENTRY_BYTES);
      throw err;
    }
  }

  /**
   * An entry went away (unlink, rmdir, replaced by a rename); `st` is its lstat from just before.
   * Its file's bytes go with its last name, unless a descriptor still holds it.
   */
  removed(st: fs.Stats): void {
    this.credit(ENTRY_BYTES);
    if (!st.isFile() || st.nlink > 1) return;
    const rec = this.files.get(`${st.dev}:${st.ino}`);
    if (rec !== undefined) rec.linked = false;
    else this.credit(st.size);
  }
}
