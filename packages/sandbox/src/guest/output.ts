import fs from 'node:fs';
import type { OutputTarget } from '../types.js';
import { sleepSync } from './preview1/imports.js';

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

/** `file`, rotated to `file.1` .. `file.<keep>` when it would pass `maxBytes`. */
function rotatingFile(file: string, maxBytes: number, keep: number): (b: Uint8Array) => void {
  let fd = fs.openSync(file, 'a', 0o640);
  let size = fs.fstatSync(fd).size;
  return (b) => {
    if (size > 0 && size + b.length > maxBytes) {
      fs.closeSync(fd);
      for (let i = keep - 1; i >= 1; i--) {
        try {
          fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
        } catch {
          // an older file that does not exist yet
        }
      }
      if (keep >= 1) fs.renameSync(file, `${file}.1`);
      else fs.truncateSync(file, 0);
      fd = fs.openSync(file, 'a', 0o640);
      size = 0;
    }
    writeAll(fd, b);
    size += b.length;
  };
}
