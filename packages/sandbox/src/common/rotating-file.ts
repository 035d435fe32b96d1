import fs from 'node:fs';
import { sleepSync } from './sleep.js';

/** All of `b` to `fd`, waiting out EAGAIN; a closed reader (EPIPE) drops the rest. */
export function writeAll(fd: number, b: Uint8Array): void {
  let off = 0;
  while (off < b.length) {
    try {
      off += fs.writeSync(fd, b, off, b.length - off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') sleepSync(1);
      else if (code === 'EPIPE') return;
      else throw err;
    }
  }
}

/**
 * `file`, rotated to `file.1` .. `file.<keep>` when it would pass `maxBytes`. The cap counts bytes,
 * not writes: a write larger than `maxBytes` is split at the cap (rotating between the pieces), and
 * of a write larger than everything kept only its last `maxBytes * (keep + 1)` bytes are written
 * (the rest would be rotated away at once), so no file ever holds more than `maxBytes`.
 *
 * Rotation copies and truncates rather than renaming: readers holding the live file (`logs
 * --follow`) keep reading the same file. It runs outside the wall only (the agent, for process
 * and shared guest hosts alike: host/output-pump.ts, host/shared-host.ts).
 */
export interface RotatingFile {
  write(b: Uint8Array): void;
  /** Closes the file; later writes are dropped. */
  close(): void;
}

export function rotatingFile(file: string, maxBytes: number, keep: number, opened?: number): RotatingFile {
  let fd: number | null = opened ?? fs.openSync(file, 'a', 0o600);
  let size = fs.fstatSync(fd).size;
  const rotate = () => {
    for (let i = keep; i >= 1; i--) {
      try {
        fs.copyFileSync(i === 1 ? file : `${file}.${i - 1}`, `${file}.${i}`);
      } catch {
        // an older file that does not exist yet, or one the agent's total log cap removed
      }
    }
    if (fd === null) return;
    fs.ftruncateSync(fd, 0);
    // Removed under us (an operator, or the agent's total log cap): make it anew where that is
    // possible (inside the wall it is not, and the bytes go to the unlinked file).
    if (fs.fstatSync(fd).nlink === 0) {
      try {
        const again = fs.openSync(file, 'a', 0o600);
        fs.closeSync(fd);
        fd = again;
      } catch {
        // keep the open file
      }
    }
    size = 0;
  };
  return {
    write(whole) {
      const kept = maxBytes * (keep + 1);
      let b = whole.length > kept ? whole.subarray(whole.length - kept) : whole;
      while (b.length > 0 && fd !== null) {
        // A write that fits in one file starts a new file rather than being split (lines stay whole).
        if (size >= maxBytes || (size > 0 && b.length <= maxBytes && size + b.length > maxBytes)) rotate();
        const piece = b.subarray(0, maxBytes - size);
        writeAll(fd, piece);
        size += piece.length;
        b = b.subarray(piece.length);
      }
    },
    close() {
      if (fd !== null) fs.closeSync(fd);
      fd = null;
    },
  };
}

/** A log file whose writes may wait for it to open: `close` settles once what was written is in it. */
export interface OpeningFile {
  write(b: Uint8Array): void;
  close(): Promise<void>;
  /** Its open failed (a full disk, a removed directory): what was written is dropped; open it anew to try again. */
  readonly failed: boolean;
}

/**
 * A `rotatingFile` opened off this thread (libuv's pool): writes made before it is open wait in
 * memory, in order, and are written once it is; a close made meanwhile writes them, then closes,
 * and settles then. A file that cannot be opened drops what was written to it, as a failing write
 * does, and says so (`failed`: the caller opens it anew at its next write, as a synchronous open
 * that threw was tried again at the next). For the agent's shared guests: 1,000 guests' first
 * lines were 1,000 file creations on the agent's thread, ~150 ms of a 1,000-guest start on 2 busy
 * cores (~35 us each on an idle machine), each held up behind the state's and audit's fsyncs.
 */
export function rotatingFileOpening(file: string, maxBytes: number, keep: number): OpeningFile {
  let f: RotatingFile | null = null;
  /** Bytes written before the file is open (null once it is, or failed). */
  let waiting: Uint8Array[] | null = [];
  let closed = false;
  let failed = false;
  const opened = new Promise<void>((resolve) =>
    fs.open(file, 'a', 0o600, (err, fd) => {
      const early = waiting ?? [];
      waiting = null;
      if (err === null) {
        try {
          f = rotatingFile(file, maxBytes, keep, fd);
        } catch {
          // Opened but not usable (its fstat failed): closed again, and tried anew at the next write.
          fs.close(fd, () => undefined);
        }
      }
      failed = f === null;
      try {
        for (const b of early) f?.write(b);
      } catch {
        // dropped, as any write this file refuses
      }
      if (closed) f?.close();
      resolve();
    }),
  );
  return {
    write(b) {
      if (closed) return;
      if (waiting !== null) waiting.push(b);
      else f?.write(b);
    },
    close() {
      closed = true;
      f?.close();
      return opened;
    },
    get failed() {
      return failed;
    },
  };
}
