import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Enforcement } from '../types.js';
import { DENIED_SYSCALLS, seccompProgram } from './seccomp.js';

/**
 * The kernel wall around a guest host (issue 9), as systemd's DynamicUser=, CapabilityBoundingSet=,
 * NoNewPrivileges=, SystemCallFilter= and TemporaryFileSystem=/BindPaths= do for a service:
 *
 * - as root: bubblewrap builds new mount, pid, ipc, uts (and cgroup) namespaces whose filesystem
 *   holds only Node.js, lowcloud's code, the guest's binary and config (read-only) and its own
 *   data; inside, setpriv switches to the guest's own uid and gid, drops every capability
 *   (effective, permitted, inheritable, bounding, ambient) and sets no_new_privs; bubblewrap
 *   installs the seccomp deny-list (seccomp.ts) before that;
 * - without root: the same view through an unprivileged user namespace (the caller's uid, no
 *   capabilities), no_new_privs and seccomp, where the kernel allows user namespaces;
 * - where bubblewrap cannot run, the guest host runs as the caller and the report says so.
 *
 * bubblewrap runs as root and without a user namespace when lowcloud is root: a user namespace
 * made by root maps the inside uid to outside root, so files the guest makes would be root's and
 * root-owned 0600 files in its view readable; with setpriv inside, the guest is a plain uid.
 */
export const DYNAMIC_UID_MIN = 61184;
export const DYNAMIC_UID_MAX = 65519;

export interface Wall {
  mode: 'root' | 'userns';
  bwrap: string;
  setpriv: string;
  /** What the probe saw inside the wall (proven, not assumed). */
  proven: { capEffZero: boolean; noNewPrivs: boolean; seccomp: boolean; viewHidden: boolean; uidChanged: boolean };
}

let probed: { wall: Wall | null; reason: string } | null = null;

function tool(name: string): string | null {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/**
 * Can this machine build the wall? Tried by running it once around a tiny program that reports
 * what it sees (uid, capabilities, no_new_privs, seccomp, whether a host file is visible).
 */
export function probeWall(): { wall: Wall | null; reason: string } {
  if (probed !== null) return probed;
  probed = probeWallNow();
  return probed;
}

function probeWallNow(): { wall: Wall | null; reason: string } {
  if (process.platform !== 'linux') return { wall: null, reason: 'not Linux' };
  if (process.env.LOWCLOUD_NO_WALL === '1') return { wall: null, reason: 'turned off (LOWCLOUD_NO_WALL=1)' };
  const bwrap = tool('bwrap');
  const setpriv = tool('setpriv');
  const sh = tool('sh');
  if (bwrap === null || setpriv === null || sh === null) return { wall: null, reason: `${bwrap === null ? 'bubblewrap (bwrap)' : 'setpriv'} is not installed` };
  const mode = process.getuid?.() === 0 ? 'root' : 'userns';
  const probe = [sh, '-c', 'cat /proc/self/status; [ -e /etc/passwd ] || echo view:hidden'];
  const args = wallArgs({ mode, bwrap, setpriv, proven: { capEffZero: false, noNewPrivs: false, seccomp: false, viewHidden: false, uidChanged: false } }, {
    uid: mode === 'root' ? DYNAMIC_UID_MAX : null,
    ro: [],
    rw: [],
    seccompFd: 0,
    infoFd: null,
    dieWithParent: true,
    command: probe,
  });
  let out: string;
  try {
    out = execFileSync(bwrap, args, { input: seccompProgram(), env: {}, stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 }).toString();
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim().split('\n')[0];
    return { wall: null, reason: `bubblewrap could not build the wall here: ${stderr || (err as Error).message}` };
  }
  const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(out)?.[1]?.trim() ?? '';
  const proven = {
    capEffZero: /^0+$/.test(field('CapEff')) && /^0+$/.test(field('CapBnd')) && /^0+$/.test(field('CapPrm')),
    noNewPrivs: field('NoNewPrivs') === '1',
    seccomp: field('Seccomp') === '2',
    viewHidden: out.includes('view:hidden'),
    uidChanged: mode === 'root' ? field('Uid').split(/\s+/).every((u) => u === String(DYNAMIC_UID_MAX)) : true,
  };
  if (!proven.capEffZero || !proven.noNewPrivs || !proven.viewHidden || !proven.uidChanged) {
    return { wall: null, reason: `bubblewrap ran but the wall did not hold (${JSON.stringify(proven)})` };
  }
  return { wall: { mode, bwrap, setpriv, proven }, reason: '' };
}

/** The isolation line of the enforcement report. */
export function isolationReport(wall: Wall | null, reason: string, uid: number): Enforcement[] {
  const runtime: Enforcement = { mechanism: 'the WASI host (JavaScript) gives the guest only its grants', level: 'runtime' };
  if (wall === null) {
    return [runtime, { mechanism: `no kernel wall around the guest host: it runs as uid ${uid} with the caller's privileges (${reason})`, level: 'advisory' }];
  }
  const parts = [
    wall.mode === 'root' ? (uid === 0 ? 'uid 0 (the caller; lowcloud run keeps it), no capabilities' : `its own uid/gid ${uid}, no capabilities`) : `uid ${uid} (the caller) in a user namespace, no capabilities`,
    'no_new_privs',
    ...(wall.proven.seccomp ? [`seccomp deny-list (${DENIED_SYSCALLS.length} calls: ptrace, mount, bpf, unshare, ...)`] : []),
    'mount/pid/ipc/uts namespaces (bubblewrap): only Node.js, lowcloud, the binary, its config and data are visible',
  ];
  return [{ mechanism: parts.join(', '), level: 'kernel' }, runtime];
}

const SYSTEM = ['/usr', '/lib', '/lib64', '/lib32', '/libx32', '/bin', '/sbin'];
const ETC = ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/gai.conf', '/etc/host.conf', '/etc/localtime'];

let code: string[] | null = null;

/** What the guest host needs of lowcloud and Node.js: read-only, nothing else of the tree. */
export function codeView(): string[] {
  if (code !== null) return code;
  const out = new Set<string>();
  const node = fs.realpathSync(process.execPath);
  if (!SYSTEM.some((s) => node.startsWith(`${s}/`))) out.add(path.dirname(path.dirname(node)));
  const here = fs.realpathSync(fileURLToPath(import.meta.url));
  for (const entry of [here, fs.realpathSync(fileURLToPath(import.meta.resolve('@lowcloud/api')))]) {
    const pkg = packageDir(entry);
    out.add(path.join(pkg, 'dist'));
    out.add(path.join(pkg, 'package.json'));
    // Dependencies: every node_modules up the tree (its workspace links lead back to bound packages).
    for (let d = pkg; d !== path.dirname(d); d = path.dirname(d)) {
      const nm = path.join(d, 'node_modules');
      if (fs.existsSync(nm)) out.add(fs.realpathSync(nm));
    }
  }
  code = [...out];
  return code;
}

function packageDir(file: string): string {
  for (let d = path.dirname(file); d !== path.dirname(d); d = path.dirname(d)) if (fs.existsSync(path.join(d, 'package.json'))) return d;
  throw new Error(`no package.json above ${file}`);
}

export interface WallSpec {
  /** The guest's own uid (root mode); null keeps the caller's. */
  uid: number | null;
  /** Host paths bound read-only / read-write at the same path inside. */
  ro: string[];
  rw: string[];
  seccompFd: number;
  /** Where bubblewrap writes `{"child-pid": N}` (the guest host's pid as the host sees it). */
  infoFd: number | null;
  dieWithParent: boolean;
  command: string[];
}

/** bubblewrap's arguments for a wall around `command`. */
export function wallArgs(w: Wall, s: WallSpec): string[] {
  const a: string[] = ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try', '--as-pid-1', '--new-session'];
  if (w.mode === 'userns') a.push('--unshare-user', '--cap-drop', 'ALL');
  if (s.dieWithParent) a.push('--die-with-parent');
  for (const p of SYSTEM) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue; // not on this distribution
    }
    if (st.isSymbolicLink()) a.push('--symlink', fs.readlinkSync(p), p);
    else a.push('--ro-bind', p, p);
  }
  // Only name resolution and the time zone of /etc (bubblewrap would make /etc 0700 otherwise).
  a.push('--perms', '0755', '--dir', '/etc');
  for (const p of ETC) a.push('--ro-bind-try', p, p);
  a.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp');
  const binds = [...s.ro.map((p) => ({ p, rw: false })), ...s.rw.map((p) => ({ p, rw: true }))].sort((x, y) => x.p.length - y.p.length);
  // bubblewrap makes missing parents 0700 as root: make them traversable (not listable) first.
  const parents = new Set<string>();
  for (const { p } of binds) {
    for (let d = path.dirname(p); d !== '/' && d !== '.'; d = path.dirname(d)) {
      if (SYSTEM.some((s) => d === s || d.startsWith(`${s}/`)) || d === '/tmp' || d === '/proc' || d === '/dev') break;
      parents.add(d);
    }
  }
  for (const d of [...parents].sort((x, y) => x.length - y.length)) a.push('--perms', '0711', '--dir', d);
  for (const { p, rw } of binds) a.push(rw ? '--bind' : '--ro-bind', p, p);
  a.push('--seccomp', String(s.seccompFd));
  if (s.infoFd !== null) a.push('--info-fd', String(s.infoFd));
  a.push('--', w.setpriv);
  if (w.mode === 'root') {
    if (s.uid !== null) a.push('--reuid', String(s.uid), '--regid', String(s.uid));
    a.push('--clear-groups', '--inh-caps=-all', '--bounding-set=-all');
  }
  a.push('--no-new-privs', '--', ...s.command);
  return a;
}

/**
 * As root with kernel objects: a two-line shell launcher joins the guest's cgroups *before* it
 * execs the wall (so everything after is born confined; a refused write means exit 125 and no
 * guest code), and stays behind as the guest host's root-owned parent to remove its cgroups and
 * nftables table when it ends, also when no agent is watching. Paths and names are arguments,
 * never part of the script.
 */
const LAUNCHER = [
  // Not exported: the guest host gets no environment. SIGPIPE ignored: the report pipe's reader
  // (the agent) may be gone, and the cleanup below must still run.
  "PATH=/usr/sbin:/usr/bin:/sbin:/bin; trap '' PIPE",
  'n=$1; nft=$2; table=$3; oom=$4; shift 4',
  'dirs=""; i=0; while [ "$i" -lt "$n" ]; do dirs="$dirs $1"; shift; i=$((i+1)); done',
  // The inner shell joins and execs; without the wall it reports its own pid (bubblewrap does otherwise).
  'sh -c \'for d in $1; do echo $$ 2>/dev/null >"$d/cgroup.procs" || { echo "the kernel refused to move the guest host into $d" >&4; exit 125; }; done; shift; [ "$1" = --pid ] && { shift; echo "{\\"child-pid\\": $$}" >&4; exec "$@" 4>&-; }; exec "$@"\' sh "$dirs" "$@"',
  'rc=$?',
  // The kernel's OOM kill is read before the cgroup goes, and told to whoever still listens, and
  // to a file in the run directory for an agent that re-attached (it holds no pipe to this shell).
  'for d in $dirs; do if grep -qsE "^oom_kill [1-9]" "$d/memory.events" "$d/memory.oom_control"; then echo oom-killed >&4; [ "$oom" = - ] || echo oom-killed >"$oom"; break; fi; done',
  '[ "$table" = - ] || "$nft" delete table inet "$table" 2>/dev/null',
  'for d in $dirs; do k=0; while [ -d "$d" ] && [ $k -lt 40 ] && ! rmdir "$d" 2>/dev/null; do sleep 0.05; k=$((k+1)); done; done',
  'exit $rc',
].join('\n');

/** `oomFile`: where the launcher writes `oom-killed` (in the agent's own run directory, never the guest's). */
export function launcherArgs(cgroupDirs: string[], firewall: { nft: string; table: string } | null, reportsOwnPid: boolean, oomFile: string | null, command: string[]): string[] {
  for (const d of cgroupDirs) if (/\s/.test(d)) throw new Error(`cgroup path with white space: ${d}`);
  return ['-c', LAUNCHER, 'sh', String(cgroupDirs.length), firewall?.nft ?? '-', firewall?.table ?? '-', oomFile ?? '-', ...cgroupDirs, ...(reportsOwnPid ? ['--pid'] : []), ...command];
}
