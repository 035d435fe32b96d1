import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { canonicalJson } from '@lowcloud/api';

export interface AuditEntry {
  seq: number;
  at: string;
  key: string;
  type: string;
  process?: string;
  body: string;
  generation: number;
  prev: string;
  hash: string;
}

const hashOf = (e: Omit<AuditEntry, 'hash'>) => createHash('sha256').update(canonicalJson(e)).digest('hex');

/**
 * Append-only, hash-chained record of every accepted mutating call: each line carries the hash of
 * the line before it, so removing or editing a line breaks the chain from there on.
 */
export class AuditLog {
  private prev = '0'.repeat(64);
  private seq = 0;

  constructor(private readonly file: string) {
    if (fs.existsSync(file)) {
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n').filter((l) => l !== '');
      const last = lines.at(-1);
      if (last !== undefined) {
        const e = JSON.parse(last) as AuditEntry;
        this.prev = e.hash;
        this.seq = e.seq;
      }
    }
  }

  append(entry: { key: string; type: string; process?: string; body: string; generation: number }): void {
    const base = { seq: this.seq + 1, at: new Date().toISOString(), ...entry, prev: this.prev };
    const full: AuditEntry = { ...base, hash: hashOf(base) };
    const fd = fs.openSync(this.file, 'a', 0o600);
    try {
      fs.writeSync(fd, `${JSON.stringify(full)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.prev = full.hash;
    this.seq = full.seq;
  }
}

/** Check the chain; returns the number of entries, or the first line that does not verify. */
export function verifyAuditLog(file: string): { ok: true; entries: number } | { ok: false; line: number; reason: string } {
  const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
  let prev = '0'.repeat(64);
  for (let i = 0; i < lines.length; i++) {
    const e = JSON.parse(lines[i] as string) as AuditEntry;
    const { hash, ...rest } = e;
    if (e.prev !== prev) return { ok: false, line: i + 1, reason: 'does not chain to the line before' };
    if (hashOf(rest) !== hash) return { ok: false, line: i + 1, reason: 'its hash does not match its contents' };
    prev = hash;
  }
  return { ok: true, entries: lines.length };
}
