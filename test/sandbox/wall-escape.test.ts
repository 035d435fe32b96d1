import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GUEST_TASKS, probeCapabilities, probeWall, seccompProgram, spawnGuest, wallCommand, type WallLimits } from '@lowcloud/sandbox';
import { alive, guestOptions } from '../helpers/guests.js';

/**
 * Code that has left the WebAssembly sandbox (issue 17): a program run inside the very wall a
 * guest host gets (wallCommand: prlimit, the noexec mounts, bubblewrap, setpriv, seccomp) tries
 * what an escaped guest host would. The test's own tools (python3 for raw system calls) are bound
 * from /usr for these tests only; the view a guest host gets is checked without them.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-escape-'));
chmodSync(work, 0o755);
const started: number[] = [];
afterAll(() => {
  for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

const { wall, reason } = probeWall();
const root = process.getuid?.() === 0;
const UID_A = 65002;
const filterFile = path.join(work, 'filter.bpf');
writeFileSync(filterFile, seccompProgram());
const py = '/usr/bin/python3';

function inside(command: string[], view: { ro?: string[]; rw?: string[]; network?: boolean; limits?: WallLimits } = {}): string {
  if (wall === null) throw new Error(`no wall: ${reason}`);
  const argv = wallCommand(wall, { uid: root ? UID_A : null, ro: view.ro ?? [], rw: view.rw ?? [], network: view.network ?? false, ...(view.limits === undefined ? {} : { limits: view.limits }), seccompFd: 3, infoFd: null, dieWithParent: true, command });
  const r = spawnSync('/bin/sh', ['-c', 'exec "$@" 3<"$0"', filterFile, ...argv], { env: {}, timeout: 60_000 });
  return `${r.stdout.toString()}${r.stderr.toString()}`;
}

describe('the view of an escaped guest host', () => {
  it('holds Node.js and its libraries, no shell, no interpreters, no tools; /tmp is its own, writable, bounded and noexec, as is every writable bind', ({ skip }) => {
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}`);
    const data = path.join(work, 'data');
    mkdirSync(data);
    chmodSync(data, 0o777);
    const script = `
      const fs = require('fs'), cp = require('child_process');
      for (const p of ['/bin/sh', '/usr/bin/perl', '/usr/bin/python3', '/usr/bin/env', '/usr/bin/cat', '/usr/share', '/etc/passwd']) console.log('exists', p, fs.existsSync(p));
      try { console.log('usr/bin', fs.readdirSync('/usr/bin').sort().join(',')); } catch (e) { console.log('usr/bin', e.code); }
      fs.writeFileSync('/tmp/small', 'x'); console.log('tmp write ok');
      try { fs.writeFileSync('/tmp/big', Buffer.alloc(${2 * 2 ** 20})); console.log('tmp big ok'); } catch (e) { console.log('tmp big', e.code); fs.rmSync('/tmp/big', { force: true }); }
      // A script whose interpreter does not exist: ENOENT where exec is allowed, EACCES on a noexec mount.
      for (const dir of ['/tmp', ${JSON.stringify(data)}]) {
        fs.writeFileSync(dir + '/prog', '#!/nonexistent\\n', { mode: 0o755 });
        const r = cp.spawnSync(dir + '/prog');
        console.log('exec in', dir, r.error ? r.error.code : 'ran ' + r.status);
      }`;
    const out = inside([process.execPath, '-e', script], { rw: [data], limits: { tasks: null, fileBytes: 2 ** 30, tmpBytes: 2 ** 20 } });
    for (const p of ['/bin/sh', '/usr/bin/perl', '/usr/bin/python3', '/usr/bin/env', '/usr/bin/cat', '/usr/share', '/etc/passwd']) expect(out).toContain(`exists ${p} false`);
    // Not listable; where it could be, only Node.js (where it lives in /usr/bin) and setpriv.
    expect(out).toMatch(/^usr\/bin (EACCES|(node,)?setpriv)$/m);
    expect(out).toContain('tmp write ok');
    expect(out).toContain('tmp big ENOSPC');
    expect(out).toContain('exec in /tmp EACCES');
    if (root) expect(out).toContain(`exec in ${data} EACCES`);
    else console.log(`not root: writable binds keep exec in the unprivileged wall (${/exec in \S+data \S+/.exec(out)?.[0] ?? out})`);
  });
});

describe('calls and sockets an escaped guest host tries', () => {
  it('modify_ldt, personality, listmount, an unknown call; netlink, vsock and AF_UNIX sockets (so no abstract socket of the host); /proc/net shows no host socket', async ({ skip }) => {
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}`);
    if (!existsSync(py)) return skip('python3 is not installed: it makes the raw system calls of this test');
    if (process.arch !== 'x64') return skip('the raw call numbers below are x86_64 (seccomp.test.ts covers aarch64)');
    // A host service on an abstract socket and a TCP listener: both must be out of reach and out of sight.
    const abstract = `\0lowcloud-escape-${process.pid}`;
    let reached = false;
    const server = net.createServer((s) => {
      reached = true;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(abstract, r));
    const tcp = net.createServer();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    const script = [
      'import ctypes, errno, os, socket',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'def sc(name, nr, *a):',
      '    r = libc.syscall(nr, *a)',
      '    print(name, r, errno.errorcode.get(ctypes.get_errno(), "") if r == -1 else "ok")',
      'sc("modify_ldt", 154, 0, 0, 0)',
      'sc("personality", 135, 0xffffffff)',
      'sc("listmount", 458, 0, 0, 0, 0)',
      'sc("call1000", 1000)',
      'for fam, kind, name in [(socket.AF_UNIX, socket.SOCK_STREAM, "unix"), (socket.AF_NETLINK, socket.SOCK_DGRAM, "netlink"), (40, socket.SOCK_STREAM, "vsock")]:',
      '    try:',
      '        s = socket.socket(fam, kind); print(name, "made")',
      // Node.js 20 binds an abstract name padded to the whole sun_path (108 bytes), 22 and later
      // bind it at its own length: try both.
      '        if name == "unix":',
      `            for n in [${JSON.stringify(abstract)}, ${JSON.stringify(abstract)}.ljust(108, "\\0")]:`,
      '                try: socket.socket(fam, kind).connect(n); print("unix connected"); break',
      '                except ConnectionRefusedError: pass',
      '            else: print("unix ECONNREFUSED")',
      '    except OSError as e: print(name, errno.errorcode.get(e.errno, e.errno))',
      'print("tcp lines", len(open("/proc/net/tcp").read().splitlines()) - 1)',
      'print("tcp6 lines", len(open("/proc/net/tcp6").read().splitlines()) - 1)',
    ].join('\n');
    try {
      const out = inside([py, '-c', script], { ro: ['/usr'] });
      expect(out).toMatch(/^modify_ldt -1 EPERM$/m);
      expect(out).toMatch(/^personality -1 EPERM$/m);
      expect(out).toMatch(/^listmount -1 EPERM$/m);
      expect(out).toMatch(/^call1000 -1 ENOSYS$/m);
      expect(out).toMatch(/^unix EPERM$/m);
      expect(out).toMatch(/^netlink EPERM$/m);
      expect(out).toMatch(/^vsock EPERM$/m);
      expect(out).toMatch(/^tcp lines 0$/m);
      expect(out).toMatch(/^tcp6 lines 0$/m);
      expect(reached).toBe(false);
      // Outside the wall the same program makes the netlink socket, reaches the abstract socket and sees the listener.
      const outside = spawnSync(py, ['-c', script], { env: {} }).stdout.toString();
      expect(outside).toMatch(/^netlink made$/m);
      expect(outside).toMatch(/^unix connected$/m);
      expect(Number(/^tcp lines (\d+)$/m.exec(outside)?.[1])).toBeGreaterThan(0);
    } finally {
      server.close();
      tcp.close();
    }
  });
});

describe('what an escaped guest host can multiply', () => {
  it('a fork loop stops at the task limit (RLIMIT_NPROC for a uid of its own); core dumps are off; files stop at RLIMIT_FSIZE', ({ skip }) => {
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}`);
    if (!existsSync(py)) return skip('python3 is not installed: it runs the fork loop of this test');
    if (!root) return skip('not root: RLIMIT_NPROC is set only for a uid of the guest\'s own (root), and the pids cgroup needs root');
    const script = [
      'import errno, os, resource, signal, time',
      'print("core", resource.getrlimit(resource.RLIMIT_CORE)[0])',
      'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)',
      'f = open("/tmp/f", "wb")',
      'try: f.write(b"x" * 200000); f.flush(); print("fsize wrote")',
      'except OSError as e: print("fsize", errno.errorcode[e.errno])',
      'n = 0',
      'try:',
      '    for i in range(1000):',
      '        if os.fork() == 0: time.sleep(3); os._exit(0)',
      '        n += 1',
      '    print("forked", n)',
      'except OSError as e: print("fork stopped", n, errno.errorcode[e.errno])',
    ].join('\n');
    const out = inside([py, '-c', script], { ro: ['/usr'], limits: { tasks: 64, fileBytes: 100_000, tmpBytes: 2 ** 20 } });
    expect(out).toMatch(/^core 0$/m);
    expect(out).toMatch(/^fsize EFBIG$/m);
    const m = /^fork stopped (\d+) EAGAIN$/m.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m?.[1])).toBeLessThan(64);
  });

  it('a guest host is in a pids cgroup of its own with pids.max where the controller exists', async ({ skip }) => {
    const caps = await probeCapabilities();
    if (wall === null) return skip(`kernel wall unavailable here: ${reason}`);
    if (!caps.controllers.includes('pids')) return skip(`no pids cgroup controller here (cgroup: ${caps.cgroup ?? 'none'}; ${caps.unavailable.cgroup ?? ''}): the task limit is RLIMIT_NPROC`);
    const g = await spawnGuest(guestOptions('spin', { args: ['30'] }));
    started.push(g.pid);
    try {
      const line = readFileSync(`/proc/${g.pid}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => /^\d+:(pids|):/.test(l) && l.includes('/g-'));
      expect(line).toBeDefined();
      const rel = (line as string).split(':')[2] as string;
      const dir = caps.cgroup === 'v1' ? path.join('/sys/fs/cgroup/pids', rel) : path.join('/sys/fs/cgroup', rel);
      expect(readFileSync(path.join(dir, 'pids.max'), 'utf8').trim()).toBe(String(GUEST_TASKS));
      expect(g.report.isolation[0]?.mechanism).toContain(`at most ${GUEST_TASKS} tasks (cgroup pids.max)`);
      expect(g.report.isolation[0]?.mechanism).toContain('an empty network namespace of its own');
    } finally {
      await g.stop(2000);
    }
  });
});
