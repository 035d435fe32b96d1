import fs from 'node:fs';
import path from 'node:path';

/**
 * Write a file so that after a crash it holds either the old or the new contents, never a mix:
 * write a temporary file, fsync it, rename it over the target, fsync the directory. Private (0600)
 * unless asked otherwise.
 */
export function writeFileDurable(file: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
