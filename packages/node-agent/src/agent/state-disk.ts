import fs from 'node:fs';
import { appendWhole, writeFileAtomic } from '@lowcloud/sandbox';
import { isNoSpace, StateDiskFullError } from '../errors.js';

/**
 * Free space the agent keeps on its state filesystem by default (`--state-reserve`): new work
 * (an upload chunk, a start, a replace-config) that would leave less is refused, so that the
 * agent can always write its state and audit log to stop guests.
 */
export const DEFAULT_STATE_RESERVE_BYTES = 2 ** 20;

export interface StateDiskSpace {
  dir: string;
  freeBytes: number;
  totalBytes: number;
  reserveBytes: number;
}

/**
 * The filesystem of the state directory: every file the agent persists is written through it
 * (complete or an error, the old file untouched), and a full disk is a `StateDiskFullError` naming
 * the directory and the space needed, never a raw errno.
 */
export class StateDisk {
  constructor(
    readonly dir: string,
    readonly reserveBytes = DEFAULT_STATE_RESERVE_BYTES,
  ) {}

  /** Free (for an unprivileged writer, as `df` shows) and total bytes of the state filesystem. */
  space(): StateDiskSpace {
    const s = fs.statfsSync(this.dir);
    return { dir: this.dir, freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize, reserveBytes: this.reserveBytes };
  }

  /** New work that will take about `bytes`: refused when it would leave less than the reserve free. */
  admit(what: string, bytes: number): void {
    const { freeBytes } = this.space();
    if (freeBytes - bytes < this.reserveBytes) throw new StateDiskFullError(this.dir, what, { neededBytes: bytes, freeBytes, reserveBytes: this.reserveBytes });
  }

  /**
   * `admit` for the calls of one group, checked in turn: the free space read once (a statfs per
   * call was ~12 us each of a 1,000-start group), each admitted call's bytes counted against it.
   */
  admitter(): (what: string, bytes: number) => void {
    let freeBytes: number | null = null;
    return (what, bytes) => {
      freeBytes ??= this.space().freeBytes;
      if (freeBytes - bytes < this.reserveBytes) throw new StateDiskFullError(this.dir, what, { neededBytes: bytes, freeBytes, reserveBytes: this.reserveBytes });
      freeBytes -= bytes;
    };
  }

  /** Replace a file whole (see `writeFileAtomic`). */
  writeFile(file: string, data: string | Uint8Array, opts: { mode?: number; keepPrevious?: boolean } = {}): void {
    this.guard(`writing ${file}`, Buffer.byteLength(data), () => writeFileAtomic(file, data, opts));
  }

  /** Append whole to an open file, or leave it as it was (see `appendWhole`); returns its new size. */
  append(fd: number, what: string, data: string | Uint8Array): number {
    return this.guard(what, Buffer.byteLength(data), () => appendWhole(fd, data));
  }

  /** Runs `f`; a full disk (ENOSPC, EDQUOT) from it becomes a StateDiskFullError. */
  guard<T>(what: string, bytes: number, f: () => T): T {
    try {
      return f();
    } catch (err) {
      throw this.named(err, what, bytes);
    }
  }

  async guardAsync<T>(what: string, bytes: number, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      throw this.named(err, what, bytes);
    }
  }

  private named(err: unknown, what: string, bytes: number): unknown {
    if (!isNoSpace(err)) return err;
    let freeBytes = 0;
    try {
      freeBytes = this.space().freeBytes;
    } catch {
      // statfs failing too: report 0 free
    }
    return new StateDiskFullError(this.dir, what, { neededBytes: bytes, freeBytes, reserveBytes: this.reserveBytes }, err);
  }
}
