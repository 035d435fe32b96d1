import fsp from 'node:fs/promises';
import path from 'node:path';

/** How the guests' log files are capped: per file, files kept per process, and across the agent. */
export interface LogLimits {
  /** A log file is rotated when it reaches this many bytes. */
  maxBytes: number;
  /** Rotated files kept per process (`name.log.1` .. `name.log.<keep>`). */
  keep: number;
  /** All log files of the agent together (running and stopped processes); oldest go first. */
  totalBytes: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { maxBytes: 1 << 20, keep: 3, totalBytes: 256 * 2 ** 20 };

/** The tail reads at most this much of the current file; a follower reads at most this much per tick. */
const READ_WINDOW = 1 << 20;
/** A "line" without a newline is cut here (a guest that never writes one must not grow the buffer). */
const MAX_LINE = 64 * 1024;
const FOLLOW_TICK_MS = 200;

/**
 * Send the last `tail` lines of a process's log, then (with `follow`) every line appended from then
 * on, across rotations and a file that disappears and comes back: the follower reads the file it
 * opened to its end (a rotated file keeps its inode) before it moves to the file now at `file`.
 * Everything is asynchronous; no error of the file system escapes (the file is hostile: a guest
 * writes it, anyone with the state directory can move it). Returns a function that stops following.
 */
export async function streamLog(file: string, opts: { tail: number; follow: boolean }, onLine: (line: string) => void): Promise<() => void> {
  let fh: fsp.FileHandle | null = null;
  let ino = -1;
  let offset = 0;
  let partial = '';
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const emit = (text: string) => {
    const parts = (partial + text).split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) onLine(p);
    while (partial.length > MAX_LINE) {
      onLine(partial.slice(0, MAX_LINE));
      partial = partial.slice(MAX_LINE);
    }
  };
  const close = async () => {
    const h = fh;
    fh = null;
    // Closing a handle we read from cannot fail in a way that matters: the next tick reopens.
    await h?.close().catch(() => undefined);
  };
  const open = async (): Promise<fsp.FileHandle | null> => {
    try {
      fh = await fsp.open(file, 'r');
      ino = (await fh.stat()).ino;
      offset = 0;
      return fh;
    } catch {
      await close();
      return null; // not there (yet, or between a rotation's rename and the writer's reopen)
    }
  };

  const first = await open();
  if (first !== null) {
    const size = (await first.stat()).size;
    const start = Math.max(0, size - READ_WINDOW);
    const text = await readRange(first, start, size);
    // Inside the window the first line may be cut: drop it unless the window is the whole file.
    const lines = text.split('\n');
    if (start > 0) lines.shift();
    const last = lines.pop() ?? '';
    const complete = opts.tail === 0 ? [] : lines.slice(-opts.tail);
    complete.forEach(onLine);
    if (opts.follow) partial = last;
    else if (last !== '' && opts.tail > 0) onLine(last);
    offset = size;
  }
  if (!opts.follow) {
    await close();
    return () => undefined;
  }

  const tick = async () => {
    const h = fh ?? (await open());
    if (h === null) return;
    const size = (await h.stat()).size;
    if (size < offset) offset = 0; // truncated in place
    if (size > offset) {
      const end = Math.min(size, offset + READ_WINDOW);
      emit(await readRange(h, offset, end));
      offset = end;
      if (end < size) return; // more of this file next tick
    }
    // Drained the file we hold: if `file` is now another file (rotated) or gone, move on to it.
    const now = await fsp.stat(file).catch(() => null);
    if (now === null || now.ino !== ino) await close();
  };
  const loop = () => {
    timer = setTimeout(() => {
      void tick()
        .catch((err: unknown) => {
          process.stderr.write(`logs --follow ${path.basename(file)}: ${err instanceof Error ? err.message : String(err)}; reopening\n`);
          return close();
        })
        .then(() => {
          if (!stopped) loop();
        });
    }, FOLLOW_TICK_MS);
  };
  loop();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    void close();
  };
}

async function readRange(h: fsp.FileHandle, start: number, end: number): Promise<string> {
  const buf = Buffer.alloc(end - start);
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await h.read(buf, got, buf.length - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got).toString('utf8');
}

const LOG_FILE = /\.log(\.\d+)?$/;

/**
 * Keeps all log files under `dir` within `totalBytes`: the oldest rotated files go first, then, if
 * the current files alone are over, the least recently written current file is emptied (its writer
 * appends, so it keeps writing at the new end). Runs every `intervalMs`, off the event loop's way.
 */
export class LogBudget {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly dir: string,
    private readonly totalBytes: number,
    private readonly intervalMs = 2000,
  ) {}

  start(): void {
    const run = () => {
      this.timer = setTimeout(() => void this.sweep().finally(run), this.intervalMs);
      this.timer.unref();
    };
    void this.sweep().finally(run);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
  }

  /** One pass; concurrent calls share it. */
  sweep(): Promise<void> {
    this.running ??= this.pass()
      .catch((err: unknown) => {
        process.stderr.write(`log budget: ${err instanceof Error ? err.message : String(err)}\n`);
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  private async pass(): Promise<void> {
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    const files: { file: string; size: number; mtime: number; rotated: boolean }[] = [];
    for (const name of names.filter((n) => LOG_FILE.test(n))) {
      const st = await fsp.lstat(path.join(this.dir, name)).catch(() => null);
      if (st?.isFile() === true) files.push({ file: path.join(this.dir, name), size: st.size, mtime: st.mtimeMs, rotated: !name.endsWith('.log') });
    }
    let total = files.reduce((s, f) => s + f.size, 0);
    if (total <= this.totalBytes) return;
    // Rotated files before current ones; within each, oldest first.
    files.sort((a, b) => Number(b.rotated) - Number(a.rotated) || a.mtime - b.mtime);
    for (const f of files) {
      if (total <= this.totalBytes) break;
      try {
        if (f.rotated) await fsp.unlink(f.file);
        else await fsp.truncate(f.file, 0);
        total -= f.size;
      } catch (err) {
        // Rotated or removed between the listing and now: the next pass sees the new files.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
}
