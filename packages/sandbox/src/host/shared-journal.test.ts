import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { GuestRecord } from './guest.js';
import { hostRecordOf, removeCtl, type GuestHostRecord } from './guest-host.js';
import { GuestJournal, journalOf, sharedGuestRecord } from './shared-journal.js';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-journal-'));
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

let n = 0;
/** A run directory `run/<name>` with its `.shared-hosts` beside, as the agent lays them out. */
function layout(): { run: string; hosts: string } {
  const run = path.join(base, `t${n++}`, 'run');
  const hosts = path.join(run, '.shared-hosts');
  fs.mkdirSync(hosts, { recursive: true });
  return { run, hosts };
}

const hostRecord = (pid: number): GuestHostRecord => ({ id: `h${pid}`, pid, start: `s${pid}`, cgroups: [], layers: {}, guests: [], ctl: `/ctl/${pid}` });
const guest = (id: string, tag = 'a'.repeat(64)): GuestRecord => ({ id, report: { isolation: [] } as unknown as GuestRecord['report'], dirs: [], exitRecord: null, tag });

describe('a shared host journal', () => {
  it("gives a re-attaching agent the host's record with the one guest of a run directory, the latest add winning across hosts", () => {
    const { run, hosts } = layout();
    const a = new GuestJournal(path.join(hosts, 'ha'), hostRecord(101));
    a.add(path.join(run, 'p1'), guest('ha/0'));
    a.add(path.join(run, 'p2'), guest('ha/1'));
    a.flush();
    expect(sharedGuestRecord(path.join(run, 'p1'))?.record).toMatchObject({ pid: 101, start: 's101', ctl: '/ctl/101', guests: [{ id: 'ha/0' }] });
    expect(sharedGuestRecord(path.join(run, 'p2'))?.record.guests).toEqual([guest('ha/1')]);
    expect(sharedGuestRecord(path.join(run, 'p3'))).toBeNull();
    // p1's guest ended in ha and was started again in hb: hb's line is the one that runs.
    a.drop('ha/0');
    const b = new GuestJournal(path.join(hosts, 'hb'), hostRecord(202));
    b.add(path.join(run, 'p1'), guest('hb/0', 'b'.repeat(64)));
    b.flush();
    expect(sharedGuestRecord(path.join(run, 'p1'))?.record).toMatchObject({ pid: 202, guests: [{ id: 'hb/0', tag: 'b'.repeat(64) }] });
    // Lines are written only at flush: an add not flushed is not there yet.
    a.add(path.join(run, 'p4'), guest('ha/2'));
    expect(sharedGuestRecord(path.join(run, 'p4'))).toBeNull();
    a.flush();
    expect(sharedGuestRecord(path.join(run, 'p4'))?.record.guests[0]?.id).toBe('ha/2');
    a.close();
    b.close();
  });

  it('writes a report shared by many guests once as JSON, and each guest reads back with it whole', () => {
    const { run, hosts } = layout();
    const j = new GuestJournal(path.join(hosts, 'hs'), hostRecord(404));
    const report = Object.freeze({ memory: [{ mechanism: 'linear memory maximum "4 MiB"', level: 'runtime' }], isolation: [] }) as unknown as GuestRecord['report'];
    const records = [0, 1, 2].map((i): GuestRecord => ({ id: `hs/${i}`, report, dirs: [], exitRecord: path.join(run, `p${i}`, 'exit.json'), tag: 'c'.repeat(64) }));
    records.forEach((r, i) => j.add(path.join(run, `p${i}`), r));
    j.flush();
    for (const [i, r] of records.entries()) expect(sharedGuestRecord(path.join(run, `p${i}`))?.record.guests).toEqual([r]);
    // A report that is not frozen may change between two guests: each line has it as it was then.
    const open = { memory: [], isolation: [] as { mechanism: string; level: string }[] };
    const mutable = open as unknown as GuestRecord['report'];
    j.add(path.join(run, 'm0'), { id: 'hs/10', report: mutable, dirs: [], exitRecord: null });
    open.isolation.push({ mechanism: 'added later', level: 'runtime' });
    j.add(path.join(run, 'm1'), { id: 'hs/11', report: mutable, dirs: [], exitRecord: null });
    j.flush();
    expect(sharedGuestRecord(path.join(run, 'm0'))?.record.guests[0]?.report.isolation).toEqual([]);
    expect(sharedGuestRecord(path.join(run, 'm1'))?.record.guests[0]?.report.isolation).toEqual([{ mechanism: 'added later', level: 'runtime' }]);
    j.close();
  });

  it('drops the lines of ended guests when it grows past twice its live ones; the live ones are still found', () => {
    const { run, hosts } = layout();
    const j = new GuestJournal(path.join(hosts, 'hc'), hostRecord(303));
    for (let i = 0; i < 300; i++) j.add(path.join(run, `p${i}`), guest(`hc/${i}`));
    j.flush();
    const file = journalOf(path.join(hosts, 'hc'));
    expect(fs.readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(301);
    for (let i = 0; i < 290; i++) j.drop(`hc/${i}`);
    j.add(path.join(run, 'late'), guest('hc/300'));
    j.flush();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1 + 10 + 1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ host: { pid: 303 } });
    expect(sharedGuestRecord(path.join(run, 'p0'))).toBeNull();
    expect(sharedGuestRecord(path.join(run, 'p295'))?.record.guests[0]?.id).toBe('hc/295');
    expect(sharedGuestRecord(path.join(run, 'late'))?.record.guests[0]?.id).toBe('hc/300');
    // Appending goes on after the rewrite.
    j.add(path.join(run, 'later'), guest('hc/301'));
    j.flush();
    expect(sharedGuestRecord(path.join(run, 'later'))?.record.guests[0]?.id).toBe('hc/301');
    j.close();
  });

  it("forgets a journal removed with its host (removeCtl); another host's journal, written to meanwhile, is read again", () => {
    const { run, hosts } = layout();
    const a = new GuestJournal(path.join(hosts, 'hx'), hostRecord(707));
    const b = new GuestJournal(path.join(hosts, 'hy'), hostRecord(808));
    a.add(path.join(run, 'p1'), guest('hx/0'));
    b.add(path.join(run, 'p2'), guest('hy/0'));
    a.flush();
    b.flush();
    expect(sharedGuestRecord(path.join(run, 'p1'))?.record.pid).toBe(707);
    expect(sharedGuestRecord(path.join(run, 'p2'))?.record.pid).toBe(808);
    a.close();
    removeCtl(path.join(hosts, 'hx'));
    b.add(path.join(run, 'p3'), guest('hy/1'));
    b.flush();
    expect(sharedGuestRecord(path.join(run, 'p1'))).toBeNull();
    expect(sharedGuestRecord(path.join(run, 'p2'))?.record.pid).toBe(808);
    expect(sharedGuestRecord(path.join(run, 'p3'))?.record.guests[0]?.id).toBe('hy/1');
    b.close();
  });

  it('writes nothing for a host that never gets a guest (a spare): its first line goes with its first guest', () => {
    const { run, hosts } = layout();
    const j = new GuestJournal(path.join(hosts, 'hs'), hostRecord(505));
    j.flush();
    expect(fs.existsSync(journalOf(path.join(hosts, 'hs')))).toBe(false);
    j.add(path.join(run, 'first'), guest('hs/0'));
    j.flush();
    const lines = fs.readFileSync(journalOf(path.join(hosts, 'hs')), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0] as string)).toEqual({ host: { id: 'h505', pid: 505, start: 's505', cgroups: [], layers: {}, ctl: '/ctl/505' } });
    j.close();
  });

  it("a run directory's record is its guest.json or its journal line, whichever is newer (a process that changed isolation keeps the other's)", () => {
    const { run, hosts } = layout();
    const runDir = path.join(run, 'p');
    fs.mkdirSync(runDir, { recursive: true });
    const file = path.join(runDir, 'guest.json');
    // A `process` guest's record from before the process went shared.
    fs.writeFileSync(file, JSON.stringify({ ...hostRecord(11), guests: [guest('g-old/0')] }));
    const old = new Date(Date.now() - 600_000);
    fs.utimesSync(file, old, old);
    expect(hostRecordOf(runDir)?.pid).toBe(11);
    const j = new GuestJournal(path.join(hosts, 'hf'), hostRecord(606));
    j.add(runDir, guest('hf/0'));
    j.flush();
    expect(hostRecordOf(runDir)).toMatchObject({ pid: 606, guests: [{ id: 'hf/0' }] });
    // And back to `process`: its new guest.json is the newer.
    const later = new Date(Date.now() + 10_000);
    fs.writeFileSync(file, JSON.stringify({ ...hostRecord(12), guests: [guest('g-new/0')] }));
    fs.utimesSync(file, later, later);
    expect(hostRecordOf(runDir)?.pid).toBe(12);
    expect(hostRecordOf(path.join(run, 'none'))).toBeNull();
    j.close();
  });

  it('skips a line cut short and anything that is not a record; reads the rest', () => {
    const { run, hosts } = layout();
    const j = new GuestJournal(path.join(hosts, 'hd'), hostRecord(404));
    j.add(path.join(run, 'ok'), guest('hd/0'));
    j.flush();
    j.close();
    const file = journalOf(path.join(hosts, 'hd'));
    fs.appendFileSync(file, '{"runDir":"' + path.join(run, 'cut') + '","at":1,"gu\n[1,2]\n{"runDir":5}\n');
    // A journal whose first line is no host record gives nothing (its guests have no host to attach to).
    fs.writeFileSync(journalOf(path.join(hosts, 'he')), `${JSON.stringify({ runDir: path.join(run, 'orphan'), at: 1, guest: guest('he/0') })}\n`);
    expect(sharedGuestRecord(path.join(run, 'ok'))?.record.guests[0]?.id).toBe('hd/0');
    expect(sharedGuestRecord(path.join(run, 'cut'))).toBeNull();
    expect(sharedGuestRecord(path.join(run, 'orphan'))).toBeNull();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });
});
