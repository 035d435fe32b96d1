import { existsSync, readdirSync, readFileSync, type Dirent } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { removeGuestFirewall, type FirewallRecord, type GuestOptions } from '@lowcloud/sandbox';
import { repoRoot } from './cli.js';

/** Path of a committed preview1 test guest (test/fixtures/guests/<name>.wasm). */
export const guest = (name: string) => path.join(repoRoot, 'test/fixtures/guests', `${name}.wasm`);

/** Options for spawning the committed test guest `name` with nothing granted but what `extra` adds. */
export const guestOptions = (name: string, extra: Partial<GuestOptions> = {}): GuestOptions => ({
  wasm: guest(name),
  args: [],
  env: {},
  dirs: [],
  config: [],
  grants: { network: { listen: [], connect: [] } },
  stdout: 'pipe',
  stderr: 'pipe',
  ...extra,
});

/** FNV-1a 64 of bytes, as test/fixtures/guests/src/secretdigest.c prints it (a secret's digest, never the secret). */
export function fnv1a64(bytes: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, '0');
}

/** Wait until `check` is true, polling; fails after `timeoutMs`. */
/** Poll `check` until it holds; past `timeoutMs` throw naming `what` (a function: described as things stand then). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what: string | (() => string) = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
}

/** True while the process runs; a zombie (exited, not yet reaped) counts as gone. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * SIGKILL every guest host process (and local agent) recorded under `dir` (each detached guest writes
 * run/<name>/guest.json with its pid and start time). Agents start guests detached so they outlive
 * the agent; a test that kills its agents must still stop the guests they started. The start time
 * check makes sure a reused pid of an unrelated process is never touched.
 */
export function killGuestsUnder(dir: string): number[] {
  const killed: number[] = [];
  // A shared host's record is the first line of its journal (`<run>/.shared-hosts/<host>.guests.jsonl`).
  for (const file of findFiles(dir, (n) => n === 'guest.json' || n.endsWith('.guests.jsonl'))) {
    let info: { pid?: unknown; start?: unknown; firewall?: FirewallRecord | null; layers?: { network?: { firewall?: FirewallRecord | null } | null } };
    try {
      const text = readFileSync(file, 'utf8');
      info = file.endsWith('.jsonl') ? (JSON.parse(text.split('\n')[0] as string) as { host: typeof info }).host : (JSON.parse(text) as typeof info);
    } catch {
      continue;
    }
    // The network grant's record (sandbox/src/host/grants/network.ts); top level in older records.
    info.firewall = info.layers?.network?.firewall ?? info.firewall ?? null;
    if (typeof info.pid !== 'number' || !alive(info.pid) || procStartTime(info.pid) !== info.start) {
      // Gone already; its firewall table may still be there if no agent watched it exit.
      if (info.firewall) removeGuestFirewall(info.firewall);
      continue;
    }
    process.kill(info.pid, 'SIGKILL');
    killed.push(info.pid);
    const pid = info.pid;
    const end = Date.now() + 2000;
    while (alive(pid) && Date.now() < end) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    // Its cgroup can be removed once its parent (init, for a detached guest) has reaped it.
    const fw = info.firewall;
    if (fw) for (let i = 0; i < 10 && existsSync(fw.dir); i++) removeGuestFirewall(fw);
  }
  // Local agents that `lowcloud up` started record their pid in agents/<machine>/agent.json; their
  // command line names their state directory under `dir`.
  for (const file of findFiles(dir, (n) => n === 'agent.json')) {
    try {
      const { pid } = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown };
      if (typeof pid !== 'number' || !alive(pid) || !readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) continue;
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      continue;
    }
  }
  // What the records do not name: a guest host still starting when its agent was killed (its
  // record not written yet), killed; and the launchers of the hosts killed, which write exit
  // records and output tails into the run directories and remove their kernel objects as they end
  // (a removal of `dir` meanwhile met ENOTEMPTY in CI), waited for. Each names a path under `dir`
  // in its command line.
  const self = new Set([process.pid, process.ppid]);
  const stragglers = readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n) && !self.has(Number(n)))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${path.resolve(dir)}/`);
      } catch {
        return false;
      }
    });
  for (const pid of stragglers) {
    try {
      // The launcher (`sh`) and the tools it runs as it ends are left to finish their clean-up.
      if (['sh', 'dd', 'grep', 'rmdir', 'nft', 'ip', 'mkdir', 'mount', 'umount', 'perl'].includes(readFileSync(`/proc/${pid}/comm`, 'utf8').trim())) continue;
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // gone already
    }
  }
  const end = Date.now() + 10_000;
  while (stragglers.some(alive) && Date.now() < end) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  // Disk images the guests' data directories were mounted from (the disk grant's kernel layer):
  // unmounted, so that removing `dir` afterwards removes files, not a mounted filesystem.
  const prefix = `${path.resolve(dir)}/`;
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(prefix));
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // gone already
    }
  }
  return killed;
}

function procStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function findFiles(dir: string, name: (file: string) => boolean): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return findFiles(p, name);
    return e.isFile() && name(e.name) ? [p] : [];
  });
}

/** The pids of running shared guest hosts whose control FIFOs lie under `ctl` (an agent's `<state>/run/.shared-hosts`). */
export function sharedHostPids(ctl: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .filter((n) => {
      let args: string[];
      try {
        args = readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0');
      } catch {
        return false; // ended meanwhile
      }
      return /\/node$/.test(args[0] ?? '') && args.some((a) => a.endsWith('guest/shared.js')) && args.some((a) => a.startsWith(ctl));
    })
    .map(Number);
}

/** The directory of a process's cgroup for `controller` (memory, cpu): its v1 hierarchy's, else its v2 one. */
export function cgroupDirOf(pid: number, controller: string): string {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.map((l) => /^\d+:([^:]*):(.*)$/.exec(l)).find((m) => m?.[1]?.split(',').includes(controller));
  if (v1 !== undefined && v1 !== null) return path.join('/sys/fs/cgroup', controller, v1[2] as string);
  const v2 = lines.map((l) => /^0::(.*)$/.exec(l)).find((m) => m !== null);
  const root = readFileSync('/proc/self/mounts', 'utf8').includes(' /sys/fs/cgroup/unified cgroup2 ') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup';
  return path.join(root, v2?.[1] ?? '/');
}
