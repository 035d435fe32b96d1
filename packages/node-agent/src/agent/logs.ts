import fs from 'node:fs';

/** The last `n` lines of a process's log (its current file; rotated files hold older lines). */
export function tailLog(file: string, n: number): string[] {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return n === 0 ? [] : lines.slice(-n);
}

/** Calls `onLine` for every line appended from now on; survives rotation. Returns a stop function. */
export function followLog(file: string, onLine: (line: string) => void): () => void {
  let offset = sizeOf(file);
  let partial = '';
  const timer = setInterval(() => {
    const size = sizeOf(file);
    if (size < offset) offset = 0; // rotated
    if (size === offset) return;
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
      offset = size;
      const parts = (partial + buf.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      parts.forEach(onLine);
    } finally {
      fs.closeSync(fd);
    }
  }, 200);
  return () => clearInterval(timer);
}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
