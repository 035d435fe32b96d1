import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { guest } from '../helpers/guests.js';
import { machineFacts } from '../helpers/machine-facts.js';

const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-run-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('lowcloud run: the guest sees exactly what it is granted', () => {
  it('passes args and env, preserves the exit code, streams stdout and stderr', async () => {
    const r = await runCli(['run', guest('hello'), '--env', 'GREETING=hi', '--', '3', 'two words'], { env: { HOST_SECRET: 'must-not-leak' } });
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('argc=3\nargv[0]=hello.wasm\nargv[1]=3\nargv[2]=two words\nenv GREETING=hi\n');
    expect(r.stderr).toBe('to stderr\n');
  });

  it('standard input reaches the guest only with --stdin (without it the guest reads end-of-file)', async () => {
    const input = 'piped secret\nsecond line\n';
    expect(await runCli(['run', guest('stdin')], { input })).toMatchObject({ code: 0, stdout: 'stdin: 0 bytes: []\n' });
    expect(await runCli(['run', guest('stdin'), '--stdin'], { input })).toMatchObject({ code: 0, stdout: `stdin: ${input.length} bytes: [piped secret]\n` });
  });

  it('reports a trap as a trap, with its message', async () => {
    const r = await runCli(['run', guest('trap')]);
    expect(r.code).toBe(134);
    expect(r.stderr).toBe('lowcloud: guest trapped: RuntimeError: unreachable\n');
  });

  it('--verbose prints the enforcement report with a level for every grant', async () => {
    const r = await runCli(['run', guest('hello'), '--memory', '32MiB', '--cpu', '0.5', '--disk', '1MiB', '--dir', `${work}::/data`, '--verbose']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^ {2}memory +runtime +linear memory maximum rewritten to 33554432 bytes/m);
    // The CPU layer this machine's facts call for: the cgroup quota where a quota can be written, else the duty cycle.
    const cgroup = existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1';
    expect(r.stderr.split('\n').filter((l) => l.startsWith('  cpu '))).toEqual(
      machineFacts().cpuCgroup ? [`  cpu      kernel   cgroup ${cgroup} CPU quota 0.5 cores`] : ['  cpu      runtime  SIGSTOP/SIGCONT duty cycle at 0.5 cores'],
    );
    expect(r.stderr).toMatch(/^ {2}disk +runtime +byte quota 1048576 on writable directories/m);
    expect(r.stderr).toMatch(/^ {2}network +runtime +WASI preview1 has no socket imports/m);
  });
});

describe('lowcloud run: binaries from another toolchain (Rust std for wasm32-wasi)', () => {
  it('runs as built: args, env, files in its directory, exit code; escapes and the grants still hold', async () => {
    const dir = path.join(work, 'rust');
    mkdirSync(dir);
    const r = await runCli(['run', guest('rust-toolchain'), '--memory', '32MiB', '--dir', `${dir}::/data`, '--disk', '1MiB', '--env', 'GREETING=hi', '--', '3', 'two', 'three'], { env: { HOME: '/root' } });
    expect(r.stdout).toBe(
      'args: 3 two three\nenv GREETING: hi\nenv HOME: (unset)\nread back: written by rust\ndir /data: rust.txt\nescape: denied (Uncategorized)\nabsolute: denied (Uncategorized)\n',
    );
    expect([r.code, r.stderr]).toEqual([3, 'to stderr from rust\n']);
    expect(readFileSync(path.join(dir, 'rust.txt'), 'utf8')).toBe('written by rust\n');
  });

  it('past the disk grant its write fails with the quota error; past the memory grant its allocation fails', async () => {
    const dir = path.join(work, 'rust-quota');
    mkdirSync(dir);
    const disk = await runCli(['run', guest('rust-toolchain'), '--dir', `${dir}::/data`, '--disk', '8B', '--', '0']);
    expect(disk.code).toBe(134);
    expect(disk.stderr).toContain('message: "Quota exceeded"');
    const mem = await runCli(['run', guest('rust-toolchain'), '--memory', '32MiB', '--dir', `${dir}::/data`, '--', '0', 'alloc']);
    expect(mem.code).toBe(134);
    expect(mem.stderr).toContain('memory allocation of 268435456 bytes failed');
  });
});

describe('lowcloud run: binaries from another toolchain (AssemblyScript with its WASI shim)', () => {
  it('runs as built: args, env (only the granted one), clock, random, stderr, exit code', async () => {
    const r = await runCli(['run', guest('as-toolchain'), '--memory', '16MiB', '--env', 'GREETING=hi', '--', '5', 'two', 'three'], { env: { HOME: '/root' } });
    expect(r.stdout).toBe('args: 5 two three\nenv GREETING: hi\nenv count: 1\nclock: sane\nrandom: in range\n');
    expect([r.code, r.stderr]).toEqual([5, 'to stderr from assemblyscript\n']);
  });
});

describe('lowcloud run: memory grant', () => {
  it('allocation within the grant works', async () => {
    const r = await runCli(['run', guest('memhog'), '--memory', '32MiB', '--', '16']);
    expect(r).toMatchObject({ code: 0, stdout: 'allocated 16 MiB (check 16)\n' });
  });

  it('allocation past the grant fails inside the guest (malloc returns NULL) and the host is fine', async () => {
    const r = await runCli(['run', guest('memhog'), '--memory', '32MiB']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^allocated (2\d|3[01]) MiB then malloc returned NULL/);
  });
});

describe('lowcloud run: disk grant', () => {
  it('writes within the quota land; the write past it fails in the guest with EDQUOT', async () => {
    const dir = path.join(work, 'disk');
    mkdirSync(dir);
    const ok = await runCli(['run', guest('filewriter'), '--dir', `${dir}::/data`, '--disk', '100KiB', '--', '/data/a', '50000']);
    expect(ok).toMatchObject({ code: 0, stdout: 'wrote 50000 bytes\n' });
    expect(statSync(path.join(dir, 'a')).size).toBe(50000);
    const over = await runCli(['run', guest('filewriter'), '--dir', `${dir}::/data`, '--disk', '100KiB', '--', '/data/b', '200000']);
    expect(over.code).toBe(1);
    // 50000 bytes and the entry of `a` (4 KiB) are used, `b`'s entry takes 4 KiB more: it stops at
    // the 4 KiB write that would pass 102400.
    expect(over.stdout).toBe('write failed after 40960 bytes: Quota exceeded\n');
    expect(statSync(path.join(dir, 'b')).size).toBe(40960);
  });

  it('config files are read-only at their guest paths', async () => {
    const conf = path.join(work, 'app.conf');
    writeFileSync(conf, 'port = 7000\n');
    const r = await runCli(['run', guest('catconf'), '--config', `/etc/app.conf=${conf}`, '--', '/etc/app.conf']);
    expect(r).toMatchObject({ code: 0, stdout: 'port = 7000\nwrite: Read-only file system\n' });
    expect(readFileSync(conf, 'utf8')).toBe('port = 7000\n');
  });
});

describe('lowcloud run: escapes all fail', () => {
  it('.., absolute paths, host-planted symlinks, symlinks and hard links the guest makes, ungranted config files', async () => {
    const dir = path.join(work, 'jail');
    mkdirSync(dir);
    symlinkSync('/etc/passwd', path.join(dir, 'planted'));
    const conf = path.join(work, 'granted.conf');
    writeFileSync(conf, 'x=1\n');
    const r = await runCli(['run', guest('escape'), '--dir', `${dir}::/data`, '--config', `/etc/app.conf=${conf}`, '--', '/data']);
    expect(r.stdout).toBe(
      [
        'dotdot: DENIED (Capabilities insufficient)',
        'absolute: DENIED (No such file or directory)',
        'host-planted symlink: DENIED (Capabilities insufficient)',
        'through host-planted dir symlink: DENIED (Capabilities insufficient)',
        // The guest may make links (as under wasmtime); none leads out when followed.
        'guest symlink to /etc/passwd: DENIED (Operation not permitted)',
        'guest symlink climbing out: created',
        'open it: DENIED (Capabilities insufficient)',
        'guest symlink to ..: created',
        'open through it: DENIED (Capabilities insufficient)',
        'guest hard link to /etc/passwd: DENIED (Read-only file system)',
        'guest hard link to host-planted symlink: created',
        'open it: DENIED (Capabilities insufficient)',
        'ungranted config: DENIED (No such file or directory)',
        'granted config: readable',
        '',
      ].join('\n'),
    );
    expect(r.code).toBe(0);
  });
});

describe('lowcloud run: clear errors', () => {
  it('a file that is not WebAssembly', async () => {
    const f = path.join(work, 'script.wasm');
    writeFileSync(f, '#!/bin/sh\n');
    const r = await runCli(['run', f]);
    expect(r).toMatchObject({ code: 1, stderr: `error: ${f} is not a WebAssembly binary: it does not start with the \\0asm header\n` });
  });

  it('a component of an unsupported world (not a wasi:cli command)', async () => {
    const f = path.join(work, 'comp.wasm');
    writeFileSync(f, Uint8Array.from([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]));
    const r = await runCli(['run', f]);
    expect(r).toMatchObject({ code: 1, stderr: `error: ${f}: does not export wasi:cli/run: only WASI 0.2 command components can run as processes\n` });
  });

  it('a size without unit', async () => {
    const r = await runCli(['run', guest('hello'), '--memory', '64']);
    expect(r).toMatchObject({ code: 1, stderr: 'error: --memory: "64" has no unit; write 64MiB, 64KiB or 64B\n' });
  });

  it('a connect target that is not one is a usage error (exit 2) naming the flag and the accepted forms; nothing starts', async () => {
    for (const [target, reason] of [
      ['bogus', 'has no port'],
      ['10.0.0.300:80', 'has "10.0.0.300", which is not an IPv4 address'],
      ['db:99999', 'has port 99999, outside 1-65535'],
    ]) {
      const r = await runCli(['run', guest('hello'), '--connect', '127.0.0.1:80', '--connect', target as string, '--', 'never']);
      expect(r).toEqual({
        code: 2,
        stdout: '',
        stderr: `error: --connect: "${target}" ${reason}; use ip:port (10.0.0.6:5432), [ipv6]:port ([fd00::6]:5432), cidr:port (10.0.0.0/8:5432) or host:port (db.internal:5432)\n`,
      });
    }
  });

  it('an unknown flag', async () => {
    const r = await runCli(['run', guest('hello'), '--memroy', '64MiB']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error: unknown option '--memroy'");
  });
});
