import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { canonicalJson, signBytes, verifyBytes, type KeyPair } from '@lowcloud/api';
import { writeFileDurable } from './durable.js';

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

/**
 * Append-only record of every accepted mutating call (and every put-blob chunk), hash-chained and
 * signed line by line with the agent's key, with a signed head written atomically after each line.
 * Checked when the agent starts: a log that does not verify is kept aside, reported loudly, and a
 * new segment starts whose first line says why; the agent never appends to a broken chain.
 */
export class AuditLog {
  private prev = ZERO;
  private seq = 0;
  private readonly headFile: string;

  constructor(
    private readonly file: string,
    private readonly identity: KeyPair,
    report: (message: string) => void,
  ) {
    this.headFile = headFileOf(file);
    const v = verifyAuditLog(file, identity.publicKey, { signatures: 'unsealed' });
    if (v.ok && v.entries > 0) {
      const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
      const last = JSON.parse(lines.at(-1) as string) as AuditEntry;
      this.prev = last.hash;
      this.seq = last.seq;
      if (v.unsealed > 0) {
        report(`audit log: ${v.unsealed} signed line(s) past the signed head (a crash between a line and its head); head moved to line ${this.seq}`);
        this.writeHead();
      }
      return;
    }
    if (v.ok) {
      this.startSegment(null);
      return;
    }
    const kept = `${file}.broken-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    fs.renameSync(file, kept);
    if (fs.existsSync(this.headFile)) fs.renameSync(this.headFile, `${kept}.head`);
    const reason = `line ${v.line}: ${v.reason}`;
    report(`AUDIT LOG BROKEN: ${file} does not verify (${reason}); kept as ${path.basename(kept)}, starting a new segment`);
    this.startSegment({ reason, previous: path.basename(kept) });
  }

  append(entry: { key: string; type: string; process?: string; body: string; generation: number; blob?: AuditEntry['blob'] }): void {
    this.write({ ...entry });
  }

  private startSegment(broken: { reason: string; previous: string } | null): void {
    this.prev = ZERO;
    this.seq = 0;
    this.write({ type: 'segment', key: this.identity.publicKey, ...(broken ?? {}) });
  }

  private write(fields: Omit<AuditEntry, 'seq' | 'at' | 'prev' | 'hash' | 'sig'>): void {
    const base = { seq: this.seq + 1, at: new Date().toISOString(), ...fields, prev: this.prev };
    const hash = hashOf(base);
    const full: AuditEntry = { ...base, hash, sig: signBytes(this.identity.privateKey, lineProof(hash)) };
    const fd = fs.openSync(this.file, 'a', 0o600);
    try {
      fs.writeSync(fd, `${JSON.stringify(full)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.prev = hash;
    this.seq = full.seq;
    this.writeHead();
  }

  private writeHead(): void {
    const h = { agent: this.identity.publicKey, seq: this.seq, hash: this.prev };
    writeFileDurable(this.headFile, `${JSON.stringify({ ...h, sig: signBytes(this.identity.privateKey, headProof(h)) })}\n`, 0o600);
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
  const kept = fs.existsSync(stateDir) ? fs.readdirSync(stateDir).filter((f) => f.startsWith('audit.log.broken-') && !f.endsWith('.head')) : [];
  out(`audit log ok: ${v.entries} entries, every line and the head signed by ${v.agent} (compare it with the key the infra file pins)${v.unsealed > 0 ? `; ${v.unsealed} line(s) past the head (a crash; the agent seals them at start)` : ''}\n`);
  if (kept.length > 0) out(`earlier segments that did not verify, kept for inspection: ${kept.join(', ')}\n`);
  return 0;
}
