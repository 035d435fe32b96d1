import fs from 'node:fs';
import type { OutputTarget } from '../types.js';
import { sleepSync } from './sleep.js';

/**
 * A synchronous sink for the guest's stdout/stderr. Synchronous writes back-pressure a guest that
 * floods its output (it blocks until the pipe drains), so nothing queues up in host memory.
 */
export function openOutput(target: OutputTarget, fd: 1 | 2): (b: Uint8Array) => void {
  if (target === 'inherit' || target === 'pipe') return (b) => writeAll(fd, b);
  // stdout and stderr often share one log file: one writer, so rotation has one owner.
  let w = files.get(target.file);
  if (w === undefined) {
    w = rotatingFile(target.file, target.maxBytes, target.keep);
    files.set(target.file, w);
  }
  return w;
}

const files = new Map<string, (b: Uint8Array) => void>();

function writeAll(fd: number, b: Uint8Array): void {
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
 * Rotation copies and truncates rather than renaming: inside the wall each of these files is a
 * bind mount the host made (a rename would fail), and the host's readers keep the same file.
 */
function rotatingFile(file: string, maxBytes: number, keep: number): (b: Uint8Array) => void {
  let fd = fs.openSync(file, 'a', 0o600);
  let size = fs.fstatSync(fd).size;
  const rotate = () => {
    for (let i = keep; i >= 1; i--) {
      try {
        fs.copyFileSync(i === 1 ? file : `${file}.${i - 1}`, `${file}.${i}`);
      } catch {
        // an older file that does not exist yet, or one the agent's total log cap removed
      }
    }
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
  return (whole) => {
    const kept = maxBytes * (keep + 1);
    let b = whole.length > kept ? whole.subarray(whole.length - kept) : whole;
    while (b.length > 0) {
      // A write that fits in one file starts a new file rather than being split (lines stay whole).
      if (size >= maxBytes || (size > 0 && b.length <= maxBytes && size + b.length > maxBytes)) rotate();
      const piece = b.subarray(0, maxBytes - size);
      writeAll(fd, piece);
      size += piece.length;
      b = b.subarray(piece.length);
    }
  };
}
