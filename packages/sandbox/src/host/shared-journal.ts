import fs from 'node:fs';
import path from 'node:path';
import { writeAll, writeFileAtomic } from '../common/durable-file.js';
import type { GuestRecord } from './guest.js';
import type { GuestHostRecord } from './guest-host.js';

/**
 * The records of a shared guest host's guests, for an agent that re-attaches after a restart: one
 * file beside the directory of the host's control FIFOs (`<run>/.shared-hosts/<host>.guests.jsonl`),
 * written only by the host side, outside the wall. Not in that directory: it belongs to the host's
 * uid (its FIFOs are opened by the host) and is bound into the wall, read-only; this file and
 * `.shared-hosts` are the agent's (0600, 0700). Its first line is the host's record (pid, start
 * time, cgroups, layers); each later line one guest, with the run directory of its process.
 *
 * One file a host instead of a `guest.json` in a run directory a guest: a start appends a line,
 * and the starts of one turn are one write. Before, each shared start made its run directory and
 * wrote its `guest.json` through a temporary file and a rename: ~0.6 ms of file system calls a
 * start on this machine's ext4, 0.6 of the agent's 1.7 CPU-s for 1,000 starts.
 *
 * Not fsynced, like the `guest.json` it replaces: it matters only while the host runs, and no host
 * outlives the machine. A line cut short (a full disk) is cut off again, and a reader skips any
 * line it cannot parse. Lines of guests that ended are dropped when the file is rewritten, once it
 * holds more than twice its live guests (and at least `COMPACT_AT` lines).
 */
const SUFFIX = '.guests.jsonl';

/** The journal of the shared host whose control FIFOs are in `ctl`. */
export const journalOf = (ctl: string): string => `${ctl}${SUFFIX}`;
const COMPACT_AT = 256;

/** One guest's line: its record, its process's run directory, and when it was added (the latest add of a run directory is the one that runs). */
interface GuestLine {
  runDir: string;
  at: number;
  guest: GuestRecord;
}

/** The host's record alone: its guests are the lines after it. */
function hostLine(host: GuestHostRecord): string {
  const { guests: _guests, ...alone } = host;
  return `${JSON.stringify({ host: alone })}\n`;
}

export class GuestJournal {
  /** Opened at the first flush: a host that never gets a guest (a spare) writes nothing. */
  private fd: number | null = null;
  private size = 0;
  private pending = '';
  /** Each live guest's line, by guest id (what a rewrite keeps). */
  private readonly live = new Map<string, string>();
  private lines = 0;
  private seq = 0;
  private hostLine: string;
  /** Reports' JSON, by report object. */
  private readonly reportJson = new WeakMap<object, string>();

  /**
   * The journal of the host with control FIFOs in `ctl`; its first line, the host's record
   * (without guests), is written with the first guest's. Nothing touches the disk here: a full
   * disk fails the first guests' starts (STATE_DISK_FULL), not the host's.
   */
  constructor(ctl: string, host: GuestHostRecord) {
    this.file = journalOf(ctl);
    this.hostLine = hostLine(host);
  }

  /** The host's record changed before any guest was written (a warm host taken: its cgroup's limits). */
  rehost(host: GuestHostRecord): void {
    if (this.fd !== null) throw new Error('the journal was written already');
    this.hostLine = hostLine(host);
  }

  readonly file: string;

  /**
   * A guest's line, written at the next `flush` (before its `add` goes to the host). A frozen
   * report seen before (the host's guests of one grant share one) is serialized once: ~2 KiB of
   * JSON a line, ~30 us of the agent's thread a start.
   */
  add(runDir: string, guest: GuestRecord): void {
    const { report, ...rest } = guest;
    // Only a frozen report's JSON is kept: one that can still change is written as it is now.
    let reportJson = this.reportJson.get(report);
    if (reportJson === undefined) {
      reportJson = JSON.stringify(report);
      if (Object.isFrozen(report)) this.reportJson.set(report, reportJson);
    }
    // Milliseconds and a counter: two adds of one run directory in one millisecond still order.
    const head = JSON.stringify({ runDir, at: Date.now() + this.seq++ / 1e6, guest: rest });
    // `{..., "guest": {...}}` with the report put last in the guest: the same GuestLine, parsed.
    const line = `${head.slice(0, -2)},"report":${reportJson}}}\n`;
    this.live.set(guest.id, line);
    this.pending += line;
  }

  /** The guest ended (or never started): its line goes at the next rewrite. */
  drop(id: string): void {
    this.live.delete(id);
  }

  /**
   * Write what `add` queued, as one write (or rewrite the file without the ended guests). Throws
   * when the disk refuses it; those lines are not written later (their guests are not started).
   */
  flush(): void {
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    this.lines += text.split('\n').length - 1;
    if (this.fd === null) {
      this.fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW, 0o600);
      this.size = 0;
    }
    if (this.lines > Math.max(COMPACT_AT, 2 * this.live.size)) this.rewrite();
    else this.write(this.size === 0 ? this.hostLine + text : text);
  }

  close(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // closed already
    }
    this.fd = null;
  }

  /** The host line and the live guests' lines, replacing the file whole (a temporary file renamed over it). */
  private rewrite(): void {
    const text = this.hostLine + [...this.live.values()].join('');
    writeFileAtomic(this.file, text, { durable: false });
    this.close();
    this.fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
    this.size = Buffer.byteLength(text);
    this.lines = this.live.size + 1;
  }

  private write(text: string): void {
    const bytes = Buffer.from(text);
    try {
      writeAll(this.fd as number, bytes, this.size);
    } catch (err) {
      // A line cut short would be read as garbage: cut back to what was whole.
      try {
        fs.ftruncateSync(this.fd as number, this.size);
      } catch {
        // the reader skips a line it cannot parse
      }
      throw err;
    }
    this.size += bytes.length;
  }
}

/**
 * The record a re-attaching agent needs for the shared guest of the process whose run directory
 * is `runDir`: its host's record with that guest alone in it, and when it was added (ms since the
 * epoch), from the journals of the hosts beside it; null when none names it. Where several do (the
 * process's guest ended in one host and was started again in another), the latest add is the guest
 * that runs.
 */
export function sharedGuestRecord(runDir: string): { record: GuestHostRecord; at: number } | null {
  const dir = path.join(path.dirname(path.resolve(runDir)), '.shared-hosts');
  const key = path.resolve(runDir);
  let best: { record: GuestHostRecord; at: number } | null = null;
  for (const byRunDir of journalIndex(dir)) {
    const found = byRunDir.get(key);
    if (found !== undefined && (best === null || found.at > best.at)) best = found;
  }
  return best;
}

/** Each journal read, by file: its inode, size and mtime when read, and what it says by run directory. */
const parsed = new Map<string, { stamp: string; byRunDir: Map<string, { record: GuestHostRecord; at: number }> }>();

/**
 * What the journals of `dir` say, each file read again only when its inode, size or mtime changed (an
 * agent re-attaching thousands of guests while its new starts append to one journal re-reads that
 * one, not every host's), merged by the latest add of each run directory.
 */
function journalIndex(dir: string): Map<string, { record: GuestHostRecord; at: number }>[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const maps: Map<string, { record: GuestHostRecord; at: number }>[] = [];
  const here = new Set<string>();
  for (const n of names) {
    if (!n.endsWith(SUFFIX)) continue;
    const file = path.join(dir, n);
    here.add(file);
    let stamp: string;
    try {
      const st = fs.lstatSync(file);
      if (!st.isFile()) continue;
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      continue; // a host without a journal (started attached, or ended)
    }
    let known = parsed.get(file);
    if (known?.stamp !== stamp) parsed.set(file, (known = { stamp, byRunDir: readJournal(file) }));
    maps.push(known.byRunDir);
  }
  // The journals of hosts that ended are forgotten with their files.
  for (const file of parsed.keys()) if (path.dirname(file) === dir && !here.has(file)) parsed.delete(file);
  return maps;
}

/** One journal's guests by run directory (the latest add of each); lines it cannot parse are skipped. */
function readJournal(file: string): Map<string, { record: GuestHostRecord; at: number }> {
  const latest = new Map<string, { at: number; record: GuestHostRecord }>();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return latest;
  }
  let host: Omit<GuestHostRecord, 'guests'> | null = null;
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    let line: { host?: Omit<GuestHostRecord, 'guests'> } & Partial<GuestLine>;
    try {
      line = JSON.parse(raw) as typeof line;
    } catch {
      continue; // cut short: skipped
    }
    if (line.host !== undefined && typeof line.host === 'object' && line.host !== null && typeof line.host.pid === 'number') host = line.host;
    else if (host !== null && typeof line.runDir === 'string' && typeof line.at === 'number' && typeof line.guest === 'object' && line.guest !== null && typeof line.guest.id === 'string') {
      const runDir = path.resolve(line.runDir);
      const seen = latest.get(runDir);
      if (seen === undefined || seen.at < line.at) latest.set(runDir, { at: line.at, record: { ...host, guests: [line.guest] } });
    }
  }
  return latest;
}
