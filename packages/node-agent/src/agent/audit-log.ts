import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { canonicalJson, signBytes, verifyBytes, type KeyPair } from '@lowcloud/api';
import { truncateBack } from '@lowcloud/sandbox';
import { StateDisk } from './state-disk.js';
import type { CallRecord } from './state-store.js';

export interface AuditEntry {
  seq: number;
  at: string;
  /** `segment` (first line of a log) or the call's type. */
  type: string;
  key?: string;
  process?: string;
  body?: string;
  generation?: number;
  /** put-blob: which chunk, and whether it completed the blob. */
  blob?: { digest: string; offset: number; bytes: number; complete: boolean };
  /** segment: why a new log was started (the previous one did not verify), and where it was kept. */
  reason?: string;
  previous?: string;
  /** Appended at start: the call was saved in the desired state, and the agent stopped before its line. */
  recovered?: string;
  prev: string;
  hash: string;
  /** The agent's Ed25519 signature over the line's hash: a line cannot be re-hashed or forged without the key. */
  sig: string;
}

/** The signed head (`audit.head`): how many lines the log has and the last hash, so a cut tail shows. */
interface AuditHead {
  agent: string;
  seq: number;
  hash: string;
  sig: string;
}

const ZERO = '0'.repeat(64);
const hashOf = (e: Omit<AuditEntry, 'hash' | 'sig'>) => createHash('sha256').update(canonicalJson(e)).digest('hex');
const lineProof = (hash: string) => canonicalJson({ purpose: 'lowcloud-audit-line', hash });
const headProof = (h: Omit<AuditHead, 'sig'>) => canonicalJson({ purpose: 'lowcloud-audit-head', ...h });

export type AuditVerdict =
  | { ok: true; entries: number; agent: string; unsealed: number }
  | { ok: false; line: number; reason: string; entries: number };

/** Where the chain stood: its last line's number and hash (kept in state.json at every commit). */
export interface AuditPosition {
  seq: number;
  hash: string;
}

/**
 * Whether a log that verifies holds the line a state file recorded (`recorded`): null if it does,
 * else why not. The head pins a log's length, but a log deleted together with its head leaves an
 * empty, valid log; the state file, written at every commit, remembers that lines existed.
 */
export function missingRecorded(file: string, entries: number, recorded: AuditPosition | undefined): string | null {
  if (recorded === undefined || recorded.seq < 1) return null;
  const at = `line ${recorded.seq} (hash ${recorded.hash.slice(0, 12)}...)`;
  if (entries === 0) return `audit.log and audit.head are missing (deleted?), but state.json records that the log reached ${at}`;
  const line = entries >= recorded.seq ? (readText(file) ?? '').split('\n')[recorded.seq - 1] : undefined;
  let hash: unknown;
  try {
    hash = line === undefined ? undefined : (JSON.parse(line) as AuditEntry).hash;
  } catch {
    hash = undefined;
  }
  if (hash === recorded.hash) return null;
  return `audit.log (${entries} entries) is not the log state.json records: it reached ${at} (an older copy or another log put in its place?)`;
}

/** `audit.head` next to `audit.log`. */
const headFileOf = (file: string) => path.join(path.dirname(file), 'audit.head');

/**
 * Check an audit log: every line chains to the one before (from a segment start) and its hash
 * matches its contents; the signed head (`audit.head`) matches, so a removed tail or a rewritten
 * chain shows. The head pins the whole chain up to it, so at start (`signatures: 'unsealed'`) only
 * lines past the head have their own signature checked (a crash between a line and its head);
 * offline every line's is (`'all'`, the default), and a failure names the first bad line.
 * `agentKey` defaults to `agent.pub` in the same directory (compare it with the key the file pins).
 */
export function verifyAuditLog(file: string, agentKey?: string, opts: { signatures: 'all' | 'unsealed' } = { signatures: 'all' }): AuditVerdict {
  const key = agentKey ?? readText(path.join(path.dirname(file), 'agent.pub'))?.trim();
  const text = readText(file) ?? '';
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const bad = (line: number, reason: string): AuditVerdict => ({ ok: false, line, reason, entries: lines.length });
  if (key === undefined) return bad(0, 'no agent key to check signatures with (agent.pub is missing)');
  const head = readHead(headFileOf(file), key);
  // Without a valid head nothing pins the chain: every line's own signature is checked.
  const sealed = opts.signatures === 'unsealed' && typeof head === 'object' ? head.seq : 0;
  let prev = ZERO;
  const hashes: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    let e: AuditEntry;
    try {
      e = JSON.parse(lines[i] as string) as AuditEntry;
    } catch {
      return bad(i + 1, i === lines.length - 1 && !text.endsWith('\n') ? 'the last line is cut short' : 'not a JSON line');
    }
    if (e === null || typeof e !== 'object') return bad(i + 1, 'not an audit entry');
    const { hash, sig, ...rest } = e;
    if (e.seq !== i + 1 || e.prev !== prev) return bad(i + 1, i === 0 ? 'the log does not start with its first entry (seq 1, chained to nothing): lines were removed from the start' : 'does not chain to the line before (a line was removed or reordered)');
    if (hashOf(rest) !== hash) return bad(i + 1, 'its hash does not match its contents (the line was edited)');
    if (i >= sealed && (typeof sig !== 'string' || !verifyBytes(key, lineProof(hash), sig))) return bad(i + 1, `its signature does not verify with the agent key ${key} (the line was re-hashed or forged)`);
    prev = hash;
    hashes.push(hash);
  }
  if (text !== '' && !text.endsWith('\n')) return bad(lines.length, 'the last line is cut short (no newline)');
  if (head === 'missing') return lines.length === 0 ? { ok: true, entries: 0, agent: key, unsealed: 0 } : bad(lines.length, 'audit.head (the signed head) is missing');
  if (typeof head === 'string') return bad(lines.length, head);
  if (head.seq > lines.length) return bad(lines.length + 1, `truncated: the signed head records ${head.seq} entries, the file has ${lines.length}`);
  if (head.seq > 0 && hashes[head.seq - 1] !== head.hash) {
    // The chain was rewritten: find the first line whose own signature fails, to name it.
    const full = opts.signatures === 'unsealed' ? verifyAuditLog(file, key) : null;
    return full !== null && !full.ok ? full : bad(head.seq, 'the signed head does not match this line (the log was rewritten)');
  }
  return { ok: true, entries: lines.length, agent: key, unsealed: lines.length - head.seq };
}

/** The signed head, 'missing', or why it is not valid. */
function readHead(file: string, key: string): AuditHead | 'missing' | string {
  const text = readText(file);
  if (text === null) return 'missing';
  let head: AuditHead;
  try {
    head = JSON.parse(text) as AuditHead;
  } catch {
    return 'audit.head is not JSON';
  }
  if (head === null || typeof head !== 'object' || typeof head.seq !== 'number' || head.agent !== key || !verifyBytes(key, headProof({ agent: head.agent, seq: head.seq, hash: head.hash }), head.sig)) {
    return 'audit.head is not signed by the agent key';
  }
  return head;
}

/** Whether the running agent can append to its audit log (status, /metrics). */
export interface AuditHealth {
  writable: boolean;
  entries: number;
  /** Why the last append failed (the call it belonged to was refused), while it keeps failing. */
  error?: string;
  failures: number;
  /** Why the current segment began (the log before it did not verify, or was deleted), and what to do. */
  notice?: string;
}

/** Status's line for a segment that began because of a broken or lost log. */
function segmentNotice(e: Pick<AuditEntry, 'at' | 'reason' | 'previous'>): string {
  return `this audit log segment began at ${e.at} because ${e.reason ?? ''}${e.previous === undefined ? '' : `; the earlier log is kept as ${e.previous}`}. The history before it is not in this log: check a backup of the state directory (lowcloud agent --state <copy> --verify-audit) and find out who changed it`;
}

type Fields = Omit<AuditEntry, 'seq' | 'at' | 'prev' | 'hash' | 'sig'>;
type SignedLine = { hash: string; text: string };
/** Lines signed ahead (`AuditLog.sign`): valid while the chain stands at `seq`, `from`. */
export interface SignedLines {
  from: string;
  seq: number;
  entries: readonly CallEntry[];
  lines: SignedLine[];
}
export type CallEntry = { key: string; type: string; process?: string; body: string; generation: number; blob?: AuditEntry['blob'] };

/** Call types whose lines the state file's `lastCall` is matched against at start. */
const CALL_TYPES = new Set(['start', 'stop', 'replace-config']);

/**
 * Append-only record of every accepted mutating call (and every put-blob chunk), hash-chained and
 * signed line by line with the agent's key, with a signed head written atomically after each line.
 * Checked when the agent starts: a log that does not verify is kept aside, reported loudly, and a
 * new segment starts whose first line says why; the agent never appends to a broken chain.
 *
 * An append is a line and its head, both or neither: a line that cannot be written whole, or whose
 * head cannot be written, is cut off again and the chain does not move (the call it records is
 * refused). The running agent says so at once (a log line, `status`, /metrics), not only at its
 * next start.
 */
export class AuditLog {
  private prev = ZERO;
  private seq = 0;
  private readonly headFile: string;
  private failure: string | null = null;
  private failures = 0;
  /** Why this segment began, when not on a fresh state directory (status shows it with what to do). */
  private notice: string | null = null;
  /** Lines written at start that could not be (a full disk), to go before the next one. */
  private readonly pending: Fields[] = [];
  /** The generation of the last start/stop/replace-config line in this segment (-1: none). */
  private lastCallGeneration = -1;
  /** Per blob digest, the end of the last upload chunk this segment accepted. */
  private readonly accepted = new Map<string, number>();
  /** When this segment began (ms). */
  private segmentStart = Date.now();

  constructor(
    private readonly file: string,
    private readonly identity: KeyPair,
    private readonly report: (message: string) => void,
    private readonly disk: StateDisk = new StateDisk(path.dirname(file)),
    /** Where state.json says the chain stood at its last commit (a log that lacks it was replaced or deleted). */
    recorded?: AuditPosition,
  ) {
    this.headFile = headFileOf(file);
    const v = verifyAuditLog(file, identity.publicKey, { signatures: 'unsealed' });
    const lost = v.ok ? missingRecorded(file, v.entries, recorded) : null;
    if (v.ok && lost === null && v.entries > 0) {
      const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
      const last = JSON.parse(lines.at(-1) as string) as AuditEntry;
      this.prev = last.hash;
      this.seq = last.seq;
      // This segment, from its end back to its first line: its last call, and the upload chunks it accepted.
      for (let i = lines.length - 1; i >= 0; i--) {
        const e = JSON.parse(lines[i] as string) as AuditEntry;
        if (CALL_TYPES.has(e.type) && typeof e.generation === 'number' && this.lastCallGeneration < 0) this.lastCallGeneration = e.generation;
        if (e.type === 'put-blob' && e.blob !== undefined) {
          const end = e.blob.offset + e.blob.bytes;
          if (end > (this.accepted.get(e.blob.digest) ?? -1)) this.accepted.set(e.blob.digest, end);
        }
        if (e.type === 'segment') {
          this.segmentStart = Date.parse(e.at);
          if (e.reason !== undefined) this.notice = segmentNotice(e);
          break;
        }
      }
      if (v.unsealed > 0) {
        // A full disk must not keep the agent from starting: the next line's head covers these too.
        try {
          this.writeHead(this.seq, this.prev);
          report(`audit log: ${v.unsealed} signed line(s) past the signed head (a crash between a line and its head); head moved to line ${this.seq}`);
        } catch (err) {
          report(`audit log: ${v.unsealed} signed line(s) past the signed head (a crash between a line and its head); the head cannot be written now (${err instanceof Error ? err.message : String(err)}); the next line's head covers them`);
        }
      }
      return;
    }
    if (v.ok && lost === null) {
      this.startSegment(null);
      return;
    }
    // What is there (nothing, when the log was deleted with its head) is kept aside, never appended to.
    const kept = `${file}.broken-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const keep = fs.existsSync(file);
    if (keep) fs.renameSync(file, kept);
    if (fs.existsSync(this.headFile)) fs.renameSync(this.headFile, `${kept}.head`);
    const reason = v.ok ? (lost as string) : `line ${v.line}: ${v.reason}`;
    report(`${v.ok ? 'AUDIT LOG LOST' : 'AUDIT LOG BROKEN'}: ${file}: ${reason}; ${keep ? `kept as ${path.basename(kept)}, ` : ''}starting a new segment`);
    this.startSegment({ reason, ...(keep ? { previous: path.basename(kept) } : {}) });
  }

  /** Where the chain stands now (state.json records it at each commit). */
  position(): AuditPosition {
    return { seq: this.seq, hash: this.prev };
  }

  /** Records an accepted call; throws (and records nothing) when the line cannot be appended whole. */
  append(entry: CallEntry): void {
    this.appendAll([entry]);
  }

  /**
   * Records a group of accepted calls with one append and one head (one fsync each, however many
   * lines): all of them, or (throwing) none. `signed`: the lines of these entries (or of more, of
   * which these are the first) made by `sign` while the chain stood where it stands now; made again
   * where it moved since.
   */
  appendAll(entries: CallEntry[], signed?: SignedLines): void {
    // Lines the agent could not write when it started go first (the log takes no line before them).
    if (this.pending.length > 0) {
      this.write(this.pending);
      this.pending.length = 0;
    }
    if (entries.length === 0) return;
    const ready = signed !== undefined && signed.from === this.prev && signed.seq === this.seq && signed.lines.length >= entries.length && entries.every((e, i) => signed.entries[i] === e);
    this.write(entries.map((e) => ({ ...e })), ready ? signed.lines.slice(0, entries.length) : undefined);
    for (const entry of entries) {
      if (CALL_TYPES.has(entry.type)) this.lastCallGeneration = entry.generation;
      if (entry.blob !== undefined) this.accepted.set(entry.blob.digest, entry.blob.offset + entry.blob.bytes);
    }
  }

  /**
   * At start: the call that made the desired state's generation has its line (the agent may have
   * died between saving the state and appending the line); appended now if it has not.
   */
  mend(call: CallRecord | undefined): void {
    if (call === undefined || call.generation <= this.lastCallGeneration) return;
    const what = `the last saved call (${call.type}${call.process === undefined ? '' : ` ${call.process}`}) had no line (the agent stopped between the two)`;
    const written = this.writeAtStart({ ...call, recovered: 'appended at start: the call was saved in the desired state, the agent stopped before its line' });
    this.lastCallGeneration = call.generation;
    this.report(`audit log: ${what}; ${written ? 'appended it' : 'it is appended before the next line (the log cannot take it now)'}`);
  }

  /**
   * The upload chunks this segment of the log accepted: per blob, the end of the last one, and
   * since when the segment records them. A partial blob holding more than that kept a chunk whose
   * line the agent died before writing (its call was never answered).
   */
  uploads(): { since: number; accepted: ReadonlyMap<string, number> } {
    return { since: this.segmentStart, accepted: this.accepted };
  }

  health(): AuditHealth {
    return { writable: this.failure === null, entries: this.seq, failures: this.failures, ...(this.failure === null ? {} : { error: this.failure }), ...(this.notice === null ? {} : { notice: this.notice }) };
  }

  private startSegment(broken: { reason: string; previous?: string } | null): void {
    this.prev = ZERO;
    this.seq = 0;
    const fields: Fields = { type: 'segment', key: this.identity.publicKey, ...(broken ?? {}) };
    this.writeAtStart(fields);
    if (broken !== null) this.notice = segmentNotice({ ...fields, at: new Date().toISOString() });
  }

  /**
   * A line the agent writes as it starts. A full disk must not keep the agent from starting: a line
   * that cannot be written now waits, and goes before the next call's line (until then every
   * state-changing call is refused, as the log cannot take lines). Returns whether it was written.
   */
  private writeAtStart(fields: Fields): boolean {
    try {
      this.write([fields]);
      return true;
    } catch {
      this.pending.push(fields);
      return false;
    }
  }

  /**
   * The lines of `entries`, hashed and signed, to follow the chain where it stands now (for
   * `appendAll`). A group's lines are signed while its guests start (`calls.ts`: the agent mostly
   * waits on guest hosts then) rather than after: an Ed25519 signature per line was ~60-100 ms of
   * the agent's serial path in a 1,000-start group. Yields to the event loop every 64 lines.
   */
  async sign(entries: CallEntry[]): Promise<SignedLines> {
    const from = this.prev;
    const seq = this.seq;
    const at = new Date().toISOString();
    const lines: SignedLine[] = [];
    let prev = from;
    for (let i = 0; i < entries.length; i++) {
      if (i > 0 && i % 64 === 0) await new Promise((r) => setImmediate(r));
      const line = this.line(seq + i + 1, at, { ...(entries[i] as CallEntry) }, prev);
      lines.push(line);
      prev = line.hash;
    }
    return { from, seq, entries, lines };
  }

  /** One line: its fields chained to `prev`, hashed, signed. */
  private line(seq: number, at: string, fields: Fields, prev: string): SignedLine {
    const base = { seq, at, ...fields, prev };
    const hash = hashOf(base);
    return { hash, text: `${JSON.stringify({ ...base, hash, sig: signBytes(this.identity.privateKey, lineProof(hash)) } satisfies AuditEntry)}\n` };
  }

  /** Lines and their one head, both or neither; the chain moves only when both are written. */
  private write(group: Fields[], signed?: SignedLine[]): void {
    let prev = this.prev;
    let seq = this.seq;
    const at = new Date().toISOString();
    let text = '';
    for (let i = 0; i < group.length; i++) {
      const line = signed?.[i] ?? this.line(seq + 1, at, group[i] as Fields, prev);
      text += line.text;
      prev = line.hash;
      seq++;
    }
    try {
      const fd = fs.openSync(this.file, 'a', 0o600);
      try {
        const size = fs.fstatSync(fd).size;
        this.disk.append(fd, `appending to the audit log ${this.file}`, text);
        try {
          this.writeHead(seq, prev);
        } catch (err) {
          truncateBack(fd, size); // lines without their head are no lines
          throw err;
        }
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      this.failures++;
      const message = err instanceof Error ? err.message : String(err);
      if (this.failure === null) this.report(`AUDIT LOG CANNOT APPEND: ${this.file}: ${message}; calls are refused until it can (the log itself is intact, ${this.seq} entries)`);
      this.failure = message;
      throw err;
    }
    if (this.failure !== null) this.report(`audit log: appending works again (${this.file}, after ${this.failures} refused append(s))`);
    this.failure = null;
    this.prev = prev;
    this.seq = seq;
  }

  private writeHead(seq: number, hash: string): void {
    const h = { agent: this.identity.publicKey, seq, hash };
    this.disk.writeFile(this.headFile, `${JSON.stringify({ ...h, sig: signBytes(this.identity.privateKey, headProof(h)) })}\n`, { mode: 0o600 });
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** `lowcloud agent --verify-audit`: prints the verdict; returns the exit code (0 intact, 1 broken). */
export function verifyAuditCommand(stateDir: string, out: (s: string) => void, err: (s: string) => void): number {
  const file = path.join(stateDir, 'audit.log');
  const v = verifyAuditLog(file);
  if (!v.ok) {
    err(`audit log BROKEN: ${file}:${v.line}: ${v.reason}\n`);
    return 1;
  }
  const lost = missingRecorded(file, v.entries, recordedPosition(path.join(stateDir, 'state.json')));
  if (lost !== null) {
    err(`audit log BROKEN: ${file}: ${lost}\n`);
    return 1;
  }
  const kept = fs.existsSync(stateDir) ? fs.readdirSync(stateDir).filter((f) => f.startsWith('audit.log.broken-') && !f.endsWith('.head')) : [];
  out(`audit log ok: ${v.entries} entries, every line and the head signed by ${v.agent} (compare it with the key the infra file pins)${v.unsealed > 0 ? `; ${v.unsealed} line(s) past the head (a crash; the agent seals them at start)` : ''}\n`);
  if (kept.length > 0) out(`earlier segments that did not verify, kept for inspection: ${kept.join(', ')}\n`);
  return 0;
}

/** The audit position a state file records (offline: no StateStore, nothing rewritten), or undefined. */
function recordedPosition(stateFile: string): AuditPosition | undefined {
  try {
    const a = (JSON.parse(readText(stateFile) ?? 'null') as { audit?: AuditPosition } | null)?.audit;
    return a !== undefined && Number.isInteger(a.seq) && typeof a.hash === 'string' ? a : undefined;
  } catch {
    return undefined;
  }
}
