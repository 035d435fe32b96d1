import fs from 'node:fs';
import path from 'node:path';

/**
 * Writes that are complete or an error. `write(2)` may write fewer bytes than asked (a full disk
 * writes what fits, then fails on the next call; some filesystems and a file-size limit do the
 * same); `fs.writeSync` returns that count, and a caller that ignores it keeps a cut file. Every
 * file lowcloud persists (the agent's state, audit log, uid table, blobs; the guest host's exit
 * record) is written through these.
 */

/** Write every byte of `data` at `fd` (from `position`, or the file position), or throw. */
export function writeAll(fd: number, data: string | Uint8Array, position: number | null = null): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  let done = 0;
  while (done < buf.length) {
    const n = fs.writeSync(fd, buf, done, buf.length - done, position === null ? null : position + done);
    // write(2) returns 0 only for a zero-length request; anything else would loop forever.
    if (n <= 0) throw Object.assign(new Error(`write returned ${n} with ${buf.length - done} bytes left`), { code: 'EIO' });
    done += n;
  }
}

/**
 * Replace `file` so that after a crash or a failed write it holds either the old or the new
 * contents, never a mix: write a temporary file beside it in full, fsync it, rename it over the
 * target, fsync the directory. When anything fails the target is untouched and the temporary file
 * is gone. Private (0600) unless asked otherwise.
 *
 * `keepPrevious`: the replaced contents stay as `<file>.prev` (a hard link: no bytes copied), so
 * that a reader finding `file` unreadable has the generation before it, and a writer can undo the
 * replacement by a rename, which needs no free space.
 *
 * `durable: false`: no fsync (still whole or absent after an agent crash, not after a machine
 * crash): for records of live processes, which a machine crash makes moot anyway.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, opts: { mode?: number; keepPrevious?: boolean; durable?: boolean } = {}): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'w', opts.mode ?? 0o600);
    try {
      writeAll(fd, data, 0);
      if (opts.durable !== false) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (opts.keepPrevious === true) linkPrevious(file);
    fs.renameSync(tmp, file);
  } catch (err) {
    removeQuietly(tmp);
    throw err;
  }
  if (opts.durable !== false) fsyncDir(path.dirname(file));
}

/** Remove a temporary file after a failure; the failure is what is reported, not this. */
function removeQuietly(file: string): void {
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // not a file (something else stands there): the caller reports the failure that led here
  }
}

/** `<file>.prev` becomes the current `file` (a hard link, made atomically); nothing when there is no file. */
function linkPrevious(file: string): void {
  const tmp = `${file}.prev.${process.pid}.tmp`;
  fs.rmSync(tmp, { force: true });
  try {
    fs.linkSync(file, tmp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    fs.renameSync(tmp, `${file}.prev`);
  } catch (err) {
    removeQuietly(tmp);
    throw err;
  }
}

/**
 * Undo the last `writeFileAtomic(file, ..., { keepPrevious: true })`: `<file>.prev` is renamed back
 * over `file` (no free space needed), or `file` removed when it had no previous contents.
 */
export function restorePrevious(file: string): void {
  const prev = `${file}.prev`;
  if (fs.existsSync(prev)) fs.renameSync(prev, file);
  else fs.rmSync(file, { force: true });
  fsyncDir(path.dirname(file));
}

/**
 * Append `data` to the open file `fd` whole, and fsync it, or leave the file as it was: a failed or
 * short append is cut off again (truncating needs no free space), so a log never keeps half a line.
 * Returns the file's new size.
 */
export function appendWhole(fd: number, data: string | Uint8Array): number {
  const size = fs.fstatSync(fd).size;
  try {
    writeAll(fd, data, size);
    fs.fsyncSync(fd);
  } catch (err) {
    truncateBack(fd, size);
    throw err;
  }
  return fs.fstatSync(fd).size;
}

/** Cut `fd` back to `size` bytes and fsync (what a rolled-back append or chunk leaves). */
export function truncateBack(fd: number, size: number): void {
  fs.ftruncateSync(fd, size);
  fs.fsyncSync(fd);
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
