import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { formatConnectTarget, unresolvedProcessTarget, type NetworkAccess } from '@lowcloud/api';
import { parseIp } from '../common/ip.js';
import { VETH_PREFIX, VETH_REFUSE_TABLE, VETH_TABLE_PREFIX } from './netns.js';
import { cgroup2Root, cgroupParent, removeCgroupDir, sweepStaleCgroups } from './cgroup.js';

export { cgroup2Root } from './cgroup.js';

/**
 * The kernel layer of the network grant: an nftables allow-list that applies to every socket of
 * the guest host process, found by its cgroup v2 (`socket cgroupv2`). It holds even if the runtime
 * layer (the wasi:sockets allow-list in the guest host) had a hole, and it outlives the agent.
 *
 * Each guest gets its own cgroup v2 directory `lowcloud/<name>` and its own nftables table with
 * an input and an output chain; removing the guest removes both. Loopback traffic between guests
 * on one machine is filtered too, so guests keep reaching each other at 127.0.0.1 as granted.
 *
 * Order matters: the table is loaded before the guest host joins the cgroup, and the guest host
 * waits until it sees itself in that cgroup before it runs the guest, so no socket of the guest
 * exists outside the rules.
 */
export interface FirewallRecord {
  table: string;
  /** Absolute path of the cgroup v2 directory. */
  dir: string;
}

export function nftBinary(): string | null {
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    const p = path.join(dir, 'nft');
    if (fs.existsSync(p)) return p;
  }
  return null;
}

const TABLE_PREFIX = 'lowcloud_';

export class GuestFirewall {
  private constructor(
    /** The nft binary (the guest host deletes its own table with it as it exits). */
    readonly nft: string,
    readonly record: FirewallRecord,
    /** The path a process in this cgroup sees in /proc/self/cgroup (`0::<path>`). */
    readonly procPath: string,
    readonly mechanism: string,
  ) {}

  /**
   * Create the cgroup and load the rules. `name` is unique per guest, `g-<ms since epoch>-<hex>`
   * (the cgroup directory; with `_` for `-`, the table name). Throws when the kernel refuses.
   */
  static async create(name: string, grant: NetworkAccess, component: boolean, nameservers: string[]): Promise<GuestFirewall> {
    const root = cgroup2Root();
    const nft = nftBinary();
    if (root === null || nft === null) throw new Error('no cgroup v2 hierarchy or no nft binary');
    const dir = path.join(root, cgroupParent(), name);
    // On a pure cgroup v2 machine the guest's limits cgroup is this same directory (made first).
    const existed = fs.existsSync(dir);
    fs.mkdirSync(dir, { recursive: true });
    const table = `${TABLE_PREFIX}${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
    // nft resolves the path below /sys/fs/cgroup; `level` is the depth in the v2 hierarchy.
    const nftPath = path.relative('/sys/fs/cgroup', dir);
    const rules = component ? allowList(grant, nameservers) : { out: [], in: [], summary: 'no sockets: every packet refused' };
    const ruleset = [
      `table inet ${table} {`,
      `  chain guest_out { ct state established,related accept; ${rules.out.map((r) => `${r}; `).join('')}reject; }`,
      `  chain guest_in { ct state established,related accept; ${rules.in.map((r) => `${r}; `).join('')}reject; }`,
      `  chain output { type filter hook output priority 0; policy accept; socket cgroupv2 level 2 "${nftPath}" jump guest_out; }`,
      `  chain input { type filter hook input priority 0; policy accept; socket cgroupv2 level 2 "${nftPath}" jump guest_in; }`,
      '}',
    ].join('\n');
    try {
      // Asynchronously: an agent starting many guests must not stall its event loop on nft.
      await nftAsync(nft, ['-f', '-'], ruleset);
    } catch (err) {
      if (!existed) removeCgroupDir(dir);
      throw new Error(`nft refused the rules: ${err instanceof Error ? err.message : String(err)}`);
    }
    return new GuestFirewall(nft, { table, dir }, `/${path.relative(root, dir)}`, `nftables allow-list on the guest's cgroup v2 (${rules.summary})`);
  }

  /** Remove the table and the cgroup without blocking the event loop (the guest has exited). */
  async remove(opts: { tableGone?: boolean } = {}): Promise<void> {
    await GuestFirewall.release(this.record, opts.tableGone === true);
  }

  /**
   * Remove a guest's table and cgroup from its record, without blocking the event loop. The guest
   * host deletes its table as it finishes; only one that died without finishing leaves it to us.
   */
  static async release(rec: FirewallRecord, tableGone = false): Promise<void> {
    const nft = nftBinary();
    if (!tableGone && nft !== null) await nftAsync(nft, ['delete', 'table', 'inet', rec.table]).catch(() => undefined);
    for (let i = 0; i < 40; i++) {
      try {
        fs.rmdirSync(rec.dir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        // EBUSY until the exited process has left the cgroup; the sweep takes what is left.
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  /** The same, synchronously (the sweep and test cleanup). */
  static removeRecorded(rec: FirewallRecord): void {
    const nft = nftBinary();
    if (nft !== null) {
      try {
        execFileSync(nft, ['delete', 'table', 'inet', rec.table], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    for (let i = 0; i < 20; i++) {
      try {
        fs.rmdirSync(rec.dir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        // EBUSY until the exited process has left the cgroup.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
      }
    }
  }
}

function nftAsync(nft: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(nft, args, (err, _stdout, stderr) => {
      if (err === null) resolve();
      else reject(new Error(stderr.trim().split('\n')[0] || err.message));
    });
    // nft may exit before it reads its input (EPIPE on this pipe): its exit status and stderr, in the
    // callback above, say what went wrong; unhandled, the pipe's error would end the agent.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

/** Remove a guest's table and cgroup from the record its spawn wrote (runDir/guest.json). */
export function removeGuestFirewall(rec: FirewallRecord): void {
  GuestFirewall.removeRecorded(rec);
}

/** The nameservers of /etc/resolv.conf: a guest granted a host by name needs them to look it up. */
export function systemNameservers(): string[] {
  try {
    return [...fs.readFileSync('/etc/resolv.conf', 'utf8').matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1] as string).filter((ip) => parseIp(ip) !== null);
  } catch {
    return [];
  }
}

/**
 * nft rules for the grant. Hosts granted by name are matched by port alone: their addresses may
 * change. A process target matches the address the planner resolved it to.
 */
export function allowList(grant: NetworkAccess, nameservers: string[]): { out: string[]; in: string[]; summary: string } {
  const protos = grant.udp ? ['tcp', 'udp'] : ['tcp'];
  const out: string[] = [];
  let named = false;
  for (const target of grant.connect) {
    for (const proto of protos) {
      switch (target.kind) {
        case 'address':
        case 'cidr': {
          const net = target.kind === 'cidr' ? `${target.ip}/${target.prefix}` : target.ip;
          out.push(`${target.family === 4 ? 'ip' : 'ip6'} daddr ${net} ${proto} dport ${target.port} accept`);
          break;
        }
        case 'host':
          named = true;
          out.push(`${proto} dport ${target.port} accept`);
          break;
        case 'process': {
          // The kernel layer uses the address the planner resolved the name to.
          if (target.address === undefined) throw unresolvedProcessTarget(target);
          const ip = parseIp(target.address);
          if (ip === null) {
            named = true;
            out.push(`${proto} dport ${target.port} accept`);
          } else {
            out.push(`${ip.family === 4 ? 'ip' : 'ip6'} daddr ${target.address} ${proto} dport ${target.port} accept`);
          }
          break;
        }
      }
    }
  }
  if (named) {
    for (const ns of nameservers) {
      const family = parseIp(ns)?.family === 6 ? 'ip6' : 'ip';
      out.push(`${family} daddr ${ns} udp dport 53 accept`, `${family} daddr ${ns} tcp dport 53 accept`);
    }
  }
  const input = grant.listen.length === 0 ? [] : protos.map((proto) => `${proto} dport { ${grant.listen.join(', ')} } accept`);
  const summary = [
    `listen [${grant.listen.join(', ')}]`,
    `connect [${grant.connect.map(formatConnectTarget).join(', ')}]`,
    ...(named ? [`named hosts by port, DNS to ${nameservers.join(', ') || 'no nameserver'}`] : []),
    grant.udp ? 'UDP on the same' : 'no UDP',
  ].join(', ');
  return { out, in: input, summary };
}

/** Whether this process has swept (`sweepStaleFirewalls`) since it started. */
let swept = false;

/**
 * Sweep once per process, before its first guest with a firewall: an agent sweeps as it starts
 * (and every 5 min), so its first guest host's start does not wait for a second sweep (one `nft
 * list`, one per stale table, a walk of the cgroups: ~50 ms on the event loop in a profile of a
 * 1,000-guest `up`); `lowcloud run` sweeps here.
 */
export function sweepStaleFirewallsOnce(): void {
  if (!swept) sweepStaleFirewalls();
}

/** Remove the tables and cgroups of guests that are gone (empty or removed cgroup), older than a minute. */
export function sweepStaleFirewalls(now = Date.now()): number {
  swept = true;
  const nft = nftBinary();
  const root = cgroup2Root();
  if (nft === null || root === null) return 0;
  let tables: string[];
  try {
    tables = [...execFileSync(nft, ['list', 'tables'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().matchAll(/^table inet (lowcloud_g_(\d+)_([0-9a-f]+))$/gm)]
      .filter((m) => now - Number(m[2]) > 60_000)
      .map((m) => m[1] as string);
  } catch {
    return 0;
  }
  let removed = sweepStaleVethTables(nft);
  // Cgroups (v1 and v2) left without a table and without a process.
  removed += sweepStaleCgroups(now, (name) => tables.includes(`${TABLE_PREFIX}${name.replace(/-/g, '_')}`));
  for (const table of tables) {
    const dir = path.join(root, cgroupParent(), table.slice(TABLE_PREFIX.length).replace(/_/g, '-'));
    let procs = '';
    try {
      procs = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim();
    } catch {
      // no cgroup: the guest is gone
    }
    if (procs !== '') continue;
    GuestFirewall.removeRecorded({ table, dir });
    removed++;
  }
  return removed;
}

/**
 * Stop a veth namespace's host table from redirecting its listen ports (its `pre` and `out` chains
 * emptied; its masquerade stays), before its guest host is signalled to stop (GuestHost.stop).
 * A table already gone (its shell removed it) is no error.
 */
export async function stopVethRedirects(veth: string): Promise<void> {
  const nft = nftBinary();
  if (nft === null) return;
  const table = `${VETH_TABLE_PREFIX}${veth}`;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    // A failure is not the stop's to report: the usual one is a table already gone (nothing left to
    // redirect); any other leaves the redirect to the wall shell's removal of the whole table once
    // the guest host has ended, with the shared refusal (netns.ts) for other guests meanwhile, as
    // before this step existed. The stop goes on either way.
    nftAsync(nft, ['-f', '-'], `flush chain ip ${table} pre\nflush chain ip ${table} out\n`).catch(() => undefined),
    // 2 s at most: a stop does not wait on a stuck nft.
    new Promise((r) => (timer = setTimeout(r, 2000))),
  ]);
  clearTimeout(timer);
}

/**
 * The host tables of veth namespaces (netns.ts) whose interface is gone: left by a wall shell that
 * was killed before it could remove its own. A later guest host that takes the same interface name
 * replaces its table; this removes the others, whose listen ports would otherwise still be sent
 * to an address nobody has (where VETH_REFUSE_TABLE refuses them meanwhile).
 */
function sweepStaleVethTables(nft: string): number {
  let tables: string[];
  try {
    const text = execFileSync(nft, ['list', 'tables', 'ip'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const pairs = [...text.matchAll(new RegExp(`^table ip (${VETH_TABLE_PREFIX}(${VETH_PREFIX}\\d+))$`, 'gm'))];
    tables = pairs.filter((m) => !fs.existsSync(`/sys/class/net/${m[2]}`)).map((m) => m[1] as string);
    // The shared refusal of a gone pair's address (netns.ts), once no pair has a table. A pair being
    // made just now may lose it until the next one with listen ports is made: its own table goes
    // on redirecting, and only a connect in the moments after its end waits instead of being refused.
    if (pairs.length === tables.length && new RegExp(`^table ip ${VETH_REFUSE_TABLE}$`, 'm').test(text)) tables.push(VETH_REFUSE_TABLE);
  } catch {
    return 0;
  }
  for (const table of tables) {
    try {
      execFileSync(nft, ['delete', 'table', 'ip', table], { stdio: 'ignore' });
    } catch {
      // its shell removed it meanwhile
    }
  }
  return tables.length;
}

/**
 * Can nft load a `socket cgroupv2` rule here? Checked (`nft -c`, nothing is loaded) against a test
 * cgroup made for it. Null when it can, else the reason.
 */
export function probeNftables(): string | null {
  const nft = nftBinary();
  const root = cgroup2Root();
  if (nft === null) return 'nft is not installed';
  if (root === null) return 'no cgroup v2 hierarchy';
  const parent = path.join(root, cgroupParent());
  const dir = path.join(parent, `probe-${process.pid}-${Date.now()}`);
  const madeParent = !fs.existsSync(parent);
  try {
    fs.mkdirSync(dir, { recursive: true });
    const table = `${TABLE_PREFIX}probe_${process.pid}`;
    const ruleset = `table inet ${table} {\n  chain output { type filter hook output priority 0; policy accept; socket cgroupv2 level 2 "${path.relative('/sys/fs/cgroup', dir)}" reject; }\n}\n`;
    execFileSync(nft, ['-c', '-f', '-'], { input: ruleset, stdio: ['pipe', 'ignore', 'pipe'] });
    return null;
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim().split('\n')[0];
    return `nft refused a cgroup v2 rule: ${stderr || (err as Error).message}`;
  } finally {
    removeCgroupDir(dir);
    if (madeParent) removeCgroupDir(parent);
  }
}
