import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, LowcloudError } from '@lowcloud/api';
import { StateFileError } from '../errors.js';
import { StateDisk } from './state-disk.js';

/**
 * Each process's own uid for its guest host, as systemd's DynamicUser= does, but from a range no
 * other allocator on the machine hands out: 2046820352-2046885887 (0x7A000000 + 64 Ki), inside
 * the block systemd's UIDS-GIDS.md leaves unused (1879048192-2147352575: above the nspawn
 * container ranges, below the foreign range 2147352576-2147418111, below the 2^31 line), far above
 * /etc/login.defs' subordinate ids (SUB_UID_MAX 600100000) and systemd's DynamicUser= range
 * (61184-65519), whose allocations a DynamicUser= service could otherwise be handed. A uid is also
 * skipped when an account, a running process or a subordinate range (/etc/subuid, /etc/subgid)
 * has it. Distinct per process, recorded in `uids.json` and reused across restarts so a
 * process's data stays its own; a uid stays with its name (also after a stop), so data left
 * behind never becomes another process's. The top uid of the range is the wall probe's
 * (sandbox isolation.ts PROBE_UID), never handed out.
 */
export const UID_MIN = 2046820352;
export const UID_MAX = 2046885886;
/** Uids handed out by agents before this range (systemd's DynamicUser= range): still honoured in an existing table, so a process's data stays its own. */
const LEGACY_MIN = 61184;
const LEGACY_MAX = 65519;

export class UidTable {
  private readonly file: string;
  private table: Record<string, number>;

  constructor(
    private readonly stateDir: string,
    private readonly disk = new StateDisk(stateDir),
  ) {
    this.file = path.join(stateDir, 'uids.json');
    this.table = readTable(this.file);
  }

  /** The uid of a process, allocated on first use. */
  uidFor(name: string): number {
    // Own entries only: `constructor` is a process name, and Object.prototype's is no uid.
    const known = Object.hasOwn(this.table, name) ? this.table[name] : undefined;
    if (known !== undefined) return known;
    const taken = new Set(Object.values(this.table));
    const inUse = systemUids();
    const span = UID_MAX - UID_MIN + 1;
    // Agents on one machine start their search at different places (by state directory), and skip
    // uids of accounts and of running processes, so two agents rarely meet.
    const start = createHash('sha256').update(path.resolve(this.stateDir)).digest().readUInt32BE(0) % span;
    for (let i = 0; i < span; i++) {
      const uid = UID_MIN + ((start + i) % span);
      if (taken.has(uid) || inUse.has(uid)) continue;
      const next = { ...this.table, [name]: uid };
      this.disk.writeFile(this.file, JSON.stringify(next, null, 2), { mode: 0o600 });
      this.table = next; // only once it is on disk: a uid handed out is always the one kept
      return uid;
    }
    throw new LowcloudError(ErrorCode.GRANT_UNAVAILABLE, `no free uid left in ${UID_MIN}-${UID_MAX} for process ${name}: every one is taken by this agent's processes, an account or a running process`);
  }

  /** Whether `name` has a uid already. */
  has(name: string): boolean {
    return Object.hasOwn(this.table, name);
  }

  /** The names of the table that start with `prefix` (the warm pool's placeholders). */
  namesWith(prefix: string): string[] {
    return Object.keys(this.table).filter((n) => n.startsWith(prefix));
  }

  /**
   * `from`'s uid becomes `to`'s for good (a warm host reserved under a placeholder, taken by a
   * process: the host already runs as that uid). `to` must have none yet.
   */
  rename(from: string, to: string): number {
    const uid = this.table[from];
    if (!Object.hasOwn(this.table, from) || uid === undefined || Object.hasOwn(this.table, to)) throw new Error(`uid table: cannot give ${from}'s uid to ${to}`);
    const { [from]: _gone, ...rest } = this.table;
    const next = { ...rest, [to]: uid };
    this.disk.writeFile(this.file, JSON.stringify(next, null, 2), { mode: 0o600 });
    this.table = next;
    return uid;
  }
}

function readTable(file: string): Record<string, number> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new StateFileError(file, `not a uid table (${(err as Error).message})`, 'fix or remove it');
  }
  const out: Record<string, number> = {};
  for (const [name, uid] of Object.entries(raw as Record<string, unknown>)) {
    const ok = (u: number) => (u >= UID_MIN && u <= UID_MAX) || (u >= LEGACY_MIN && u <= LEGACY_MAX);
    if (!Number.isInteger(uid) || !ok(uid as number)) throw new StateFileError(file, `${name}: ${String(uid)} is not a uid in ${UID_MIN}-${UID_MAX}`, 'fix or remove it');
    out[name] = uid as number;
  }
  return out;
}

/** uids of accounts (/etc/passwd), of running processes, and in subordinate ranges (only those that reach into ours). */
function systemUids(): Set<number> {
  const out = new Set<number>();
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue; // no subordinate ids on this machine
    }
    for (const line of text.split('\n')) {
      const [, start, count] = line.split(':').map(Number);
      if (start === undefined || count === undefined || !Number.isInteger(start) || !Number.isInteger(count)) continue;
      for (let u = Math.max(start, UID_MIN); u < Math.min(start + count, UID_MAX + 1); u++) out.add(u);
    }
  }
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const uid = Number(line.split(':')[2]);
      if (Number.isInteger(uid)) out.add(uid);
    }
  } catch {
    // no passwd file: nothing to avoid there
  }
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m !== null) out.add(Number(m[1]));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
