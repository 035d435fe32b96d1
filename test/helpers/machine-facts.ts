import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * What this machine can do, found out by trying it here, not by asking the sandbox (whose
 * `probeCapabilities` produced the reports the tests check). Each kernel layer's fact is "the
 * operation that layer needs succeeds": writing a limit into a new cgroup, running `nft`, having
 * loop devices and `mkfs.ext4`, and for the wall, bubblewrap itself starting a command in new pid,
 * ipc and uts namespaces (run here directly, never through the sandbox's probe).
 */
export interface MachineFacts {
  root: boolean;
  /** A memory limit written into a new cgroup (v1 memory controller, or v2 with memory enabled). */
  memoryCgroup: boolean;
  /** A CPU quota written into a new cgroup. */
  cpuCgroup: boolean;
  /** `nft list tables` runs and a cgroup v2 hierarchy takes a new cgroup (the network layer matches on it). */
  nftables: boolean;
  /** /dev/loop-control, `mkfs.ext4` and `mount` present (the disk layer's ext4 image). */
  diskImages: boolean;
  /** bubblewrap runs a command in new namespaces as this user (root: without a user namespace). */
  wall: boolean;
  /** The same as uid 65534 with a user namespace (the unprivileged wall); false where not root to switch to it. */
  wallUnprivileged: boolean;
  /** Why each fact is false, to print when a layer is not tested. */
  why: Record<'memoryCgroup' | 'cpuCgroup' | 'nftables' | 'diskImages' | 'wall' | 'wallUnprivileged', string>;
}

export type Level = 'kernel' | 'runtime';

/** The level each grant must get on this machine when all four are granted to an agent guest. */
/** Network: a guest with no network grant, whose walled host has an empty namespace of its own (kernel) or, unwalled, a table on its cgroup. */
export function expectedLevels(f: MachineFacts): Record<'memory' | 'cpu' | 'disk' | 'network', Level> {
  return { memory: f.memoryCgroup ? 'kernel' : 'runtime', cpu: f.cpuCgroup ? 'kernel' : 'runtime', disk: f.diskImages ? 'kernel' : 'runtime', network: f.nftables || (f.root && f.wall) ? 'kernel' : 'runtime' };
}

/** The strongest level in one grant's part of an enforcement report. */
export function strongest(entries: { level: string }[] | undefined): string {
  const levels = (entries ?? []).map((e) => e.level);
  return levels.includes('kernel') ? 'kernel' : levels.includes('runtime') ? 'runtime' : levels.includes('advisory') ? 'advisory' : 'none';
}

function tryCgroup(dir: string, file: string, value: string): string | null {
  const probe = path.join(dir, `lowcloud-facts-${process.pid}`);
  try {
    mkdirSync(probe);
  } catch (err) {
    return `cannot make a cgroup under ${dir}: ${(err as Error).message}`;
  }
  try {
    writeFileSync(path.join(probe, file), value);
    return null;
  } catch (err) {
    return `cannot write ${file} in a new cgroup under ${dir}: ${(err as Error).message}`;
  } finally {
    rmdirSync(probe);
  }
}

/** Why bubblewrap cannot start `true` in new namespaces (null: it can), run directly. */
function bwrapWhy(prefix: string[], userns: boolean): string | null {
  const args = [...(userns ? ['--unshare-user'] : []), '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', 'true'];
  const [cmd, ...rest] = [...prefix, 'bwrap', ...args];
  try {
    execFileSync(cmd as string, rest, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
    return null;
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer; message: string };
    return e.code === 'ENOENT' ? `${cmd} is not installed` : `\`${[cmd, ...rest].join(' ')}\` fails: ${e.stderr?.toString().trim() || e.message}`;
  }
}

function runs(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

let cached: MachineFacts | null = null;

export function machineFacts(): MachineFacts {
  if (cached !== null) return cached;
  const root = process.getuid?.() === 0;
  const notRoot = `not root (uid ${process.getuid?.()})`;
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const v2Controllers = v2 ? readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8') : '';
  const memWhy = !root
    ? notRoot
    : v2
      ? v2Controllers.includes('memory')
        ? tryCgroup('/sys/fs/cgroup', 'cgroup.max.depth', 'max') // v2: the limit file needs the controller enabled below the root first
        : 'cgroup v2 without the memory controller'
      : existsSync('/sys/fs/cgroup/memory')
        ? tryCgroup('/sys/fs/cgroup/memory', 'memory.limit_in_bytes', String(256 * 2 ** 20))
        : 'no memory cgroup controller mounted';
  const cpuWhy = !root
    ? notRoot
    : v2
      ? v2Controllers.includes('cpu')
        ? tryCgroup('/sys/fs/cgroup', 'cgroup.max.depth', 'max')
        : 'cgroup v2 without the cpu controller'
      : existsSync('/sys/fs/cgroup/cpu')
        ? tryCgroup('/sys/fs/cgroup/cpu', 'cpu.cfs_quota_us', '50000')
        : 'no cpu cgroup controller mounted';
  const cgroup2 = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === 'cgroup2')?.[1];
  const nftWhy = !root
    ? notRoot
    : !runs('nft', ['list', 'tables'])
      ? '`nft list tables` does not run'
      : cgroup2 === undefined
        ? 'no cgroup v2 hierarchy mounted (the network layer matches sockets on it)'
        : tryCgroup(cgroup2, 'cgroup.max.depth', 'max');
  const diskWhy = !root
    ? notRoot
    : !existsSync('/dev/loop-control')
      ? 'no /dev/loop-control'
      : !runs('mkfs.ext4', ['-V'])
        ? 'mkfs.ext4 does not run'
        : !runs('mount', ['--version'])
          ? 'mount does not run'
          : null;
  const wallWhy = bwrapWhy([], !root);
  const unprivilegedWhy = !root ? notRoot : bwrapWhy(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'], true);
  cached = {
    root,
    wall: wallWhy === null,
    wallUnprivileged: unprivilegedWhy === null,
    memoryCgroup: memWhy === null,
    cpuCgroup: cpuWhy === null,
    nftables: nftWhy === null,
    diskImages: diskWhy === null,
    why: { memoryCgroup: memWhy ?? '', cpuCgroup: cpuWhy ?? '', nftables: nftWhy ?? '', diskImages: diskWhy ?? '', wall: wallWhy ?? '', wallUnprivileged: unprivilegedWhy ?? '' },
  };
  return cached;
}
