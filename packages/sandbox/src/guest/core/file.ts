import fs from 'node:fs';
import { Errno, WasiError } from './errno.js';
import type { FileRecord, Ledger } from './ledger.js';
import { toStat, type Stat } from './stat.js';
import { setTimes, type NewTime } from './times.js';
import { at } from './walk.js';

/**
 * An open file, the same for every WASI layer. Its size lives in the Ledger's record (shared by
 * every descriptor on the file), so growth is charged exactly once, before the bytes land. The
 * host descriptor is opened with O_APPEND when the guest asked for append: the kernel then puts
 * each write at the true end, atomically, whoever else writes the file.
 */
export class HostFile {
  readonly kind = 'file';
  private closed = false;

  constructor(
    private fd: number,
    readonly rec: FileRecord,
    private readonly ledger: Ledger,
    readonly readable: boolean,
    readonly writable: boolean,
    private appendMode: boolean,
    /** On a read-only mount (or a config file): nothing about it may change, times included. */
    readonly readonly: boolean,
  ) {}

  get append(): boolean {
    return this.appendMode;
  }

  get size(): number {
    return this.rec.size;
  }

  read(bufs: Uint8Array[], pos: number): number {
    if (!this.readable || this.closed) throw new WasiError(Errno.BADF);
    if (bufs.length === 1) {
      const b = bufs[0] as Uint8Array;
      return fs.readSync(this.fd, b, 0, b.length, pos);
    }
    return fs.readvSync(this.fd, bufs, pos);
  }

  /** Write at `pos`, or at the end when the file is in append mode; returns bytes written. */
  write(bufs: Uint8Array[], pos: number): number {
    if (bufs.length === 1) {
      const b = bufs[0] as Uint8Array;
      return this.writeFrom(b, 0, b.length, pos);
    }
    if (!this.writable || this.closed) throw new WasiError(Errno.BADF);
    let len = 0;
    for (const b of bufs) len += b.length;
    if (len === 0) return 0;
    const before = this.rec.size;
    // With O_APPEND the kernel writes at the end even for a positioned write (Linux pwrite).
    const end = this.appendMode ? before + len : pos + len;
    if (end > Number.MAX_SAFE_INTEGER) throw new WasiError(Errno.FBIG);
    if (end > before) this.ledger.resize(this.rec, end);
    let n: number;
    try {
      const position = this.appendMode ? null : pos;
      n = bufs.length === 1 ? fs.writeSync(this.fd, bufs[0] as Uint8Array, 0, len, position) : fs.writevSync(this.fd, bufs, position ?? undefined);
    } catch (err) {
      if (end > before) this.ledger.resize(this.rec, before);
      throw err;
    }
    if (n < len) this.ledger.resize(this.rec, Math.max(before, (this.appendMode ? before : pos) + n));
    return n;
  }

  /** `len` bytes of `buf` from `off`: one buffer, no view of it made per call (the hot path). */
  writeFrom(buf: Uint8Array, off: number, len: number, pos: number): number {
    if (!this.writable || this.closed) throw new WasiError(Errno.BADF);
    if (len === 0) return 0;
    const before = this.rec.size;
    const end = this.appendMode ? before + len : pos + len;
    if (end > Number.MAX_SAFE_INTEGER) throw new WasiError(Errno.FBIG);
    if (end > before) this.ledger.resize(this.rec, end);
    let n: number;
    try {
      n = fs.writeSync(this.fd, buf, off, len, this.appendMode ? null : pos);
    } catch (err) {
      if (end > before) this.ledger.resize(this.rec, before);
      throw err;
    }
    if (n < len) this.ledger.resize(this.rec, Math.max(before, (this.appendMode ? before : pos) + n));
    return n;
  }

  setSize(size: number): void {
    this.mutable();
    if (!this.writable) throw new WasiError(Errno.BADF);
    if (!Number.isSafeInteger(size) || size < 0) throw new WasiError(Errno.INVAL);
    const before = this.rec.size;
    this.ledger.resize(this.rec, size);
    try {
      fs.ftruncateSync(this.fd, size);
    } catch (err) {
      this.ledger.resize(this.rec, before);
      throw err;
    }
  }

  allocate(offset: number, len: number): void {
    this.mutable();
    if (!this.writable) throw new WasiError(Errno.BADF);
    if (offset + len > this.rec.size) this.setSize(offset + len);
  }

  /** Turn append mode on or off: reopens the same file (through its descriptor) with the new flags. */
  setAppend(on: boolean): void {
    this.open();
    if (on === this.appendMode) return;
    const access = this.readable && this.writable ? fs.constants.O_RDWR : this.writable ? fs.constants.O_WRONLY : fs.constants.O_RDONLY;
    // O_NONBLOCK as every open of the walk: a host-planted FIFO with no writer blocked here forever.
    const fd = fs.openSync(at(this.fd), access | fs.constants.O_NONBLOCK | (on ? fs.constants.O_APPEND : 0));
    fs.closeSync(this.fd);
    this.fd = fd;
    this.appendMode = on;
  }

  stat(): Stat {
    this.open();
    return toStat(fs.fstatSync(this.fd, { bigint: true }));
  }

  setTimes(atime: NewTime, mtime: NewTime): void {
    this.mutable();
    setTimes({ fd: this.fd }, atime, mtime);
  }

  sync(dataOnly: boolean): void {
    this.open();
    if (dataOnly) fs.fdatasyncSync(this.fd);
    else fs.fsyncSync(this.fd);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
    this.ledger.close(this.rec);
  }

  /**
   * A closed file's host descriptor number is free for the next open: a component's stream kept
   * past its descriptor's drop would otherwise read or write whatever file got that number
   * (uncharged, through this file's record).
   */
  private open(): void {
    if (this.closed) throw new WasiError(Errno.BADF, 'the file is closed');
  }

  private mutable(): void {
    this.open();
    if (this.readonly) throw new WasiError(Errno.ROFS, 'read-only file');
  }
}
