import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPair, type KeyPair } from '@lowcloud/api';
import { AuditLog, verifyAuditLog } from './audit-log.js';

// A file size limit on this test process (prlimit, no root needed) makes appends fail part-way,
// as a full disk does: write(2) takes what fits, then fails.
const limitFileSize = (bytes: number | 'unlimited') => execFileSync('prlimit', ['--pid', String(process.pid), `--fsize=${bytes}:`]);
const dirs: string[] = [];
afterEach(() => {
  limitFileSize('unlimited');
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function newLog(): { file: string; log: AuditLog; reports: string[]; id: KeyPair } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-audit-'));
  dirs.push(dir);
  const id = generateKeyPair();
  fs.writeFileSync(path.join(dir, 'agent.pub'), `${id.publicKey}\n`);
  const reports: string[] = [];
  const file = path.join(dir, 'audit.log');
  return { file, log: new AuditLog(file, id, (m) => reports.push(m)), reports, id };
}

const call = (n: number) => ({ key: 'ed25519:caller', type: 'start', process: `p${n}`, body: 'b'.repeat(64), generation: n });

describe('AuditLog: an append is a whole line and its head, or nothing', () => {
  it('an append cut short is rolled back: the log keeps its last whole line, verifies, and its chain does not move', () => {
    const { file, log, reports } = newLog();
    log.append(call(0));
    const before = fs.readFileSync(file);
    const head = fs.readFileSync(path.join(path.dirname(file), 'audit.head'));
    limitFileSize(before.length + 100); // room for 100 bytes of a ~600-byte line
    expect(() => log.append(call(1))).toThrow(expect.objectContaining({ code: 'EFBIG' }));
    expect(fs.readFileSync(file)).toEqual(before);
    expect(fs.readFileSync(path.join(path.dirname(file), 'audit.head'))).toEqual(head);
    expect(fs.readdirSync(path.dirname(file)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // The running log says so at once, and keeps saying it while appends fail.
    expect(log.health()).toMatchObject({ writable: false, entries: 2, failures: 1, error: expect.stringContaining('EFBIG') });
    expect(reports).toEqual([expect.stringMatching(/^AUDIT LOG CANNOT APPEND: .*audit\.log: .*EFBIG.*2 entries\)$/)]);
    expect(() => log.append(call(1))).toThrow();
    expect(log.health().failures).toBe(2);
    // Room again: the next line chains to the last whole one (seq 3, no gap), and the log verifies.
    limitFileSize('unlimited');
    log.append(call(2));
    expect(log.health()).toEqual({ writable: true, entries: 3, failures: 2 });
    expect(reports.at(-1)).toMatch(/^audit log: appending works again/);
    expect(verifyAuditLog(file)).toMatchObject({ ok: true, entries: 3 });
  });

  it('a line written whole whose head cannot be written is cut off again (a line without its head is no line)', () => {
    const { file, log } = newLog();
    log.append(call(0));
    const before = fs.readFileSync(file);
    const head = fs.readFileSync(path.join(path.dirname(file), 'audit.head'));
    // The head's temporary file cannot be made (a directory stands where it goes).
    const blocker = path.join(path.dirname(file), `audit.head.${process.pid}.tmp`);
    fs.mkdirSync(blocker);
    expect(() => log.append(call(1))).toThrow(expect.objectContaining({ code: 'EISDIR' }));
    expect(fs.readFileSync(file)).toEqual(before);
    expect(fs.readFileSync(path.join(path.dirname(file), 'audit.head'))).toEqual(head);
    fs.rmdirSync(blocker);
    log.append(call(1));
    expect(verifyAuditLog(file)).toMatchObject({ ok: true, entries: 3 });
  });

  it('mend: the last saved call without its line gets one at start, marked recovered, once', () => {
    const { file, log } = newLog();
    log.append(call(0));
    log.mend({ ...call(1), generation: 1 });
    log.mend({ ...call(1), generation: 1 });
    log.mend(call(0)); // has its line
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; process?: string; recovered?: string });
    expect(lines.map((l) => [l.type, l.process, l.recovered !== undefined])).toEqual([['segment', undefined, false], ['start', 'p0', false], ['start', 'p1', true]]);
    expect(verifyAuditLog(file)).toMatchObject({ ok: true, entries: 3 });
  });

  it('an agent starting on a disk that takes no line still starts: the head it cannot seal and the line it cannot mend wait for the next append', () => {
    const { file, log, id } = newLog();
    const dir = path.dirname(file);
    log.append(call(0));
    const olderHead = fs.readFileSync(path.join(dir, 'audit.head'));
    log.append(call(1));
    fs.writeFileSync(path.join(dir, 'audit.head'), olderHead); // a crash between a line and its head
    const blocker = path.join(dir, `audit.head.${process.pid}.tmp`);
    fs.mkdirSync(blocker); // no head can be written now
    const reports: string[] = [];
    const again = new AuditLog(file, id, (m) => reports.push(m));
    again.mend({ ...call(2), generation: 2 });
    expect(reports).toEqual([expect.stringMatching(/the head cannot be written now/), expect.stringMatching(/^AUDIT LOG CANNOT APPEND/), expect.stringMatching(/it is appended before the next line/)]);
    expect(again.health().writable).toBe(false);
    fs.rmdirSync(blocker);
    again.append(call(3));
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { process?: string; recovered?: string });
    expect(lines.map((l) => [l.process, l.recovered !== undefined])).toEqual([[undefined, false], ['p0', false], ['p1', false], ['p2', true], ['p3', false]]);
    expect(verifyAuditLog(file)).toMatchObject({ ok: true, entries: 5, unsealed: 0 });
    expect(again.health()).toMatchObject({ writable: true, entries: 5 });
  });

  it('uploads: a new AuditLog on the file knows how far each upload was accepted in this segment', () => {
    const { file, log, id } = newLog();
    const d = 'd'.repeat(64);
    for (const offset of [0, 100, 200]) log.append({ key: 'ed25519:caller', type: 'put-blob', body: 'b'.repeat(64), generation: 0, blob: { digest: d, offset, bytes: 100, complete: false } });
    const again = new AuditLog(file, id, () => undefined);
    expect([...again.uploads().accepted]).toEqual([[d, 300]]);
    expect(again.uploads().since).toBeLessThanOrEqual(Date.now());
  });
});

describe('AuditLog: lines signed ahead (while a group acts)', () => {
  it('are the lines appended when the chain has not moved (all, or the first ones of a group cut short); made again where it moved', async () => {
    const { file, log } = newLog();
    const group = [call(1), call(2), call(3)];
    const signed = await log.sign(group);
    const at = JSON.parse(signed.lines[0]?.text ?? '{}') as { at: string };
    await new Promise((r) => setTimeout(r, 5)); // lines made again now would say another time
    // The first two stand (the third failed as it acted): their lines as signed, the chain at the second.
    log.appendAll(group.slice(0, 2), signed);
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines.slice(-2)).toEqual(signed.lines.slice(0, 2).map((l) => l.text.trimEnd()));
    expect(JSON.parse(lines.at(-1) as string)).toMatchObject({ process: 'p2', at: at.at });
    expect(verifyAuditLog(file)).toMatchObject({ ok: true, entries: 3 });
    // Signed ahead, then the chain moved (another line went first): made again, still one chain.
    const next = [call(4), call(5)];
    const stale = await log.sign(next);
    log.append(call(9));
    log.appendAll(next, stale);
    const after = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(after.slice(-2)).not.toEqual(stale.lines.map((l) => l.text.trimEnd()));
    expect(after.slice(-3).map((l) => (JSON.parse(l) as { process: string }).process)).toEqual(['p9', 'p4', 'p5']);
    // Other entries than were signed: made for what is appended.
    const other = await log.sign([call(6)]);
    log.appendAll([call(7)], other);
    expect(JSON.parse(fs.readFileSync(file, 'utf8').trimEnd().split('\n').at(-1) as string)).toMatchObject({ process: 'p7' });
    expect(verifyAuditLog(file)).toMatchObject({ ok: true, entries: 7 });
  });
});
