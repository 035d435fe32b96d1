import { rotatingFile, writeAll } from '../common/rotating-file.js';
import type { OutputTarget } from '../types.js';

/**
 * A synchronous sink for the guest's stdout/stderr. Synchronous writes back-pressure a guest that
 * floods its output (it blocks until the pipe drains), so nothing queues up in host memory.
 */
export function openOutput(target: OutputTarget, fd: 1 | 2): (b: Uint8Array) => void {
  if (target === 'inherit' || target === 'pipe') return (b) => writeAll(fd, b);
  // stdout and stderr often share one log file: one writer, so rotation has one owner.
  let w = files.get(target.file);
  if (w === undefined) {
    const file = rotatingFile(target.file, target.maxBytes, target.keep);
    w = (b) => file.write(b);
    files.set(target.file, w);
  }
  return w;
}

const files = new Map<string, (b: Uint8Array) => void>();
