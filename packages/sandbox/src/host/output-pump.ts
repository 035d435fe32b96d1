import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ByteBudget } from '../common/output-budget.js';
import { rotatingFile, type RotatingFile } from '../common/rotating-file.js';
import type { OutputTarget } from '../types.js';

/** A log file a guest host's output goes to: written and rotated here, outside the wall. */
export interface LogTarget {
  file: string;
  maxBytes: number;
  keep: number;
}

/** One output stream of a detached guest host, as its record keeps it for a re-attaching host. */
export interface OutputRecord extends LogTarget {
  /** The FIFO in the run directory the guest host writes to (its fds 1 and/or 2). */
  fifo: string;
}

/**
 * Where a process guest host's stdout and stderr go when they are log files. The guest host never
 * sees the files: its fds 1 and 2 are the write end of a pipe, and this process (the agent) reads
 * it and writes the rotating files (common/rotating-file.ts), so what it writes on the agent's disk
 * is bounded by the rotation whatever the code inside the wall does, and a file the agent's log
 * budget unlinked is written at most to its size (then the rotation makes a new one).
 *
 * Detached (the agent): the pipe is a FIFO in the run directory, opened read-write for the guest
 * host's descriptors, so the guest host and its launcher (which holds the same descriptors until it
 * ends) are readers too: a write never meets EPIPE while no agent runs. Its bytes wait in the
 * pipe's buffer (1 MiB where the launcher could set it, F_SETPIPE_SZ; else the kernel's 64 KiB)
 * and, once it is full, the guest blocks in its next write until an agent re-attaches and opens
 * the FIFO again (`attach`). That is the trade systemd-journald makes with its stream sockets:
 * output is never dropped on the floor or written unbounded, and a guest whose reader is away
 * waits for it. Bytes still in a pipe when the guest host ends are taken by its launcher (one read:
 * all of the pipe, at most 1 MiB) into `<fifo>.tail`, which the host appends to the log once it
 * has read the pipe to its end (`flushTails`), or when it finds the guest host gone on re-attach.
 *
 * What it reads is bounded in rate too (common/output-budget.ts): past the guest's budget it stops
 * reading until the budget allows more, so the pipe fills and the guest waits in its write, as
 * it waits for an agent that is away. Its stdout and stderr share one budget.
 *
 * Attached (`lowcloud run`, tests): a plain pipe from the child.
 */
export class OutputPump {
  private readonly files = new Map<string, RotatingFile>();
  private readonly streams: Readable[] = [];
  private readonly done: Promise<void>[] = [];
  private readonly budget = new ByteBudget();
  /** Streams paused for the budget, by the timer that resumes them. */
  private readonly held = new Map<NodeJS.Timeout, Readable>();
  /** Draining (the guest host ended): what is left is read at once. */
  private unbounded = false;

  private constructor(readonly records: OutputRecord[]) {}

  /**
   * The FIFOs for the file targets of a detached guest host (one per distinct file: stdout and
   * stderr usually share one) and the descriptors its stdout and stderr get. The caller passes
   * `fds` to spawn, then `start`s the pump and `closeWriters`.
   */
  static async prepare(runDir: string, targets: { 1: OutputTarget; 2: OutputTarget }): Promise<{ pump: OutputPump; fds: { 1?: number; 2?: number; exit: number }; closeWriters: () => void }> {
    const records: OutputRecord[] = [];
    const of: { 1?: number; 2?: number } = {};
    for (const n of [1, 2] as const) {
      const t = targets[n];
      if (typeof t !== 'object') continue;
      const same = records.findIndex((r) => r.file === t.file);
      if (same < 0) records.push({ fifo: path.join(runDir, `output-${n}`), file: t.file, maxBytes: t.maxBytes, keep: t.keep });
      of[n] = same < 0 ? records.length - 1 : same;
    }
    // The exit record's pipe (host/launcher.ts reads it): a FIFO, so the launcher can open it anew, non-blocking.
    const exit = path.join(runDir, 'exit-pipe');
    // A tail left by a run no host side saw end is older than anything this run writes.
    for (const n of [1, 2]) fs.rmSync(path.join(runDir, `output-${n}.tail`), { force: true });
    await makeFifos([...records.map((r) => r.fifo), exit]);
    // Read-write: opening does not wait for a reader, and every holder is one (no EPIPE).
    const opened = [...records.map((r) => r.fifo), exit].map((f) => fs.openSync(f, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW));
    const fds: { 1?: number; 2?: number; exit: number } = { exit: opened[opened.length - 1] as number };
    for (const n of [1, 2] as const) if (of[n] !== undefined) fds[n] = opened[of[n]];
    return {
      pump: new OutputPump(records),
      fds,
      closeWriters: () => {
        for (const fd of opened) fs.closeSync(fd);
      },
    };
  }

  /** The fds of the guest host whose pipes its launcher drains as it ends (`output-<fd>`). */
  get drainFds(): (1 | 2)[] {
    return this.records.map((r) => (r.fifo.endsWith('output-2') ? 2 : 1));
  }

  /**
   * Appends what the launcher took from the pipes as the guest host ended (`<fifo>.tail`) to
   * their logs, and removes it: after the pipe was read to its end, its tail comes last.
   */
  static flushTails(records: OutputRecord[]): void {
    for (const r of records) {
      const tail = `${r.fifo}.tail`;
      try {
        const fd = fs.openSync(tail, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
        try {
          // The launcher writes at most 1 MiB (one read of a pipe); a larger file is none of its.
          const buf = Buffer.alloc(TAIL_BYTES);
          const n = fs.fstatSync(fd).isFile() ? fs.readSync(fd, buf, 0, buf.length, 0) : 0;
          if (n > 0) {
            const f = rotatingFile(r.file, r.maxBytes, r.keep);
            f.write(buf.subarray(0, n));
            f.close();
          }
        } finally {
          fs.closeSync(fd);
        }
        fs.rmSync(tail, { force: true });
      } catch {
        // no tail (an agent read it all), or a log that cannot be written: dropped
      }
    }
  }

  /** For an attached child's piped stdout/stderr (file targets only). */
  static forPipes(targets: { 1: OutputTarget; 2: OutputTarget }, pipes: { 1: Readable | null; 2: Readable | null }): OutputPump {
    const pump = new OutputPump([]);
    for (const n of [1, 2] as const) {
      const t = targets[n];
      const s = pipes[n];
      if (typeof t === 'object' && s !== null) pump.read(s, t);
    }
    return pump;
  }

  /** Read every FIFO of a detached guest host (after its launch, or on re-attach). */
  static attach(records: OutputRecord[]): OutputPump {
    const pump = new OutputPump(records);
    pump.start();
    return pump;
  }

  /** Starts reading the FIFOs (a missing one, from a host that ended, is nothing to read). */
  start(): void {
    for (const r of this.records) {
      let fd: number;
      try {
        // Non-blocking: opening a FIFO for reading would wait for a writer, and a host that is gone has none.
        fd = fs.openSync(r.fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
        if (!fs.fstatSync(fd).isFIFO()) {
          fs.closeSync(fd);
          continue;
        }
      } catch {
        continue;
      }
      this.read(new net.Socket({ fd, readable: true, writable: false }), r);
    }
  }

  private read(stream: Readable, t: LogTarget): void {
    this.streams.push(stream);
    this.done.push(
      new Promise<void>((resolve) => {
        stream.on('data', (b: Buffer) => {
          // A log that cannot be written (disk full, removed directory) drops the guest's bytes, never the host.
          try {
            let f = this.files.get(t.file);
            if (f === undefined) this.files.set(t.file, (f = rotatingFile(t.file, t.maxBytes, t.keep)));
            f.write(b);
          } catch {
            // dropped
          }
          const wait = this.budget.take(b.length);
          if (wait > 0 && !this.unbounded) {
            stream.pause();
            const timer = setTimeout(() => {
              this.held.delete(timer);
              stream.resume();
            }, wait);
            this.held.set(timer, stream);
          }
        });
        stream.on('error', () => resolve());
        stream.on('close', () => resolve());
        stream.on('end', () => resolve());
      }),
    );
  }

  /** Every stream read to its end (the guest host and its launcher closed theirs), then the files closed; at most `ms`. */
  async drained(ms = 2000): Promise<void> {
    // The guest host is gone: its pipes hold at most what they buffer, read now, not at its budget.
    this.unbounded = true;
    this.release(true);
    await Promise.race([Promise.all(this.done), new Promise((r) => setTimeout(r, ms).unref())]);
    this.close();
  }

  /** Stops reading (the agent detaches: what the guest host writes now waits in the pipe for the next one). */
  close(): void {
    this.release(false);
    for (const s of this.streams) s.destroy();
    for (const f of this.files.values()) f.close();
    this.files.clear();
  }

  /** The budget's timers cleared; the streams they held resumed, or left to be destroyed. */
  private release(resume: boolean): void {
    for (const [timer, stream] of this.held) {
      clearTimeout(timer);
      if (resume) stream.resume();
    }
    this.held.clear();
  }
}

/** At most what the launcher takes from one pipe (its size, F_SETPIPE_SZ). */
const TAIL_BYTES = 1024 * 1024;

/**
 * The FIFOs, mode 0600 and this process's (the guest host gets descriptors, never the paths). Node.js
 * has no mkfifo: one mkfifo process makes those missing, off the event loop; a restart of the same
 * process finds them made (a pipe keeps no bytes once its last descriptor is closed, and the
 * previous guest host of a run directory has ended before the next starts).
 */
async function makeFifos(files: string[]): Promise<void> {
  const uid = process.getuid?.();
  const missing = files.filter((f) => {
    try {
      const st = fs.lstatSync(f);
      if (st.isFIFO() && st.uid === uid && (st.mode & 0o777) === 0o600) return false;
      fs.rmSync(f, { force: true });
    } catch {
      // none yet
    }
    return true;
  });
  if (missing.length === 0) return;
  await new Promise<void>((resolve, reject) => execFile('mkfifo', ['-m', '600', ...missing], (err) => (err === null ? resolve() : reject(err))));
}
