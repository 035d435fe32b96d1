import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnGuest, type GuestOptions } from '@lowcloud/sandbox';
import { guest, waitFor } from '../helpers/guests.js';
import { machineFacts } from '../helpers/machine-facts.js';

/**
 * The red-team review of the guest filesystem (issue 11), in the runtime layer alone (no kernel
 * wall): a hostile C guest (test/fixtures/guests/src/fsredteam.c) calls preview1 with its own
 * pointers, lengths and counts, and two guests race on a shared directory. Each case below broke
 * the guest host or escaped the directory before its fix; the last one pins what held.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-fs-redteam-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const MiB = 2 ** 20;

let n = 0;
function fresh(): string {
  const dir = path.join(work, `d${n++}`);
  mkdirSync(dir);
  return dir;
}

const opts = (args: string[], dirs: GuestOptions['dirs'], extra: Partial<GuestOptions> = {}): GuestOptions => ({
  wasm: guest('fsredteam'),
  args,
  env: {},
  dirs,
  config: [],
  grants: { network: { listen: [], connect: [] }, disk: MiB },
  stdout: 'pipe',
  stderr: 'pipe',
  ...extra,
});

type Tuning = NonNullable<Parameters<typeof spawnGuest>[1]>;

async function run(o: GuestOptions, tuning: Tuning = { kernel: false }): Promise<{ stdout: string; stderr: string; exit: unknown }> {
  const g = await spawnGuest(o, tuning);
  let stdout = '';
  let stderr = '';
  g.child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  g.child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = await g.exited;
  await new Promise((r) => setImmediate(r));
  return { stdout, stderr, exit };
}

/** Run one command of the attack guest on a fresh /data; it must exit 0 with nothing on stderr. */
async function attack(cmd: string, ...args: string[]): Promise<string> {
  const r = await run(opts([cmd, '/data', ...args], [{ host: fresh(), guest: '/data' }]));
  expect(r.stderr).toBe('');
  expect(r.exit).toEqual({ kind: 'exit', code: 0 });
  return r.stdout;
}

describe('hostile arguments end in an errno, never a V8 fatal error or a blamed memory grant', () => {
  it('a 32 MiB path ("./" repeated) is ENAMETOOLONG (it was split on the host heap until V8 aborted)', async () => {
    expect(await attack('longpath', '32')).toBe('longpath: stat errno 37\nlongpath: open errno 37\n');
  });

  it('four million iovecs in one fd_write or fd_read are EINVAL, past IOV_MAX (a view each exhausted the host heap)', async () => {
    expect(await attack('iovbomb', '4000000')).toBe('iovbomb: errno 28, -1 bytes\n');
    expect(await attack('iovread', '4000000')).toBe('iovread: errno 28, -1 bytes\n');
  });

  it('poll_oneoff with a million subscriptions answers each (a host object per subscription exhausted the heap)', async () => {
    expect(await attack('pollbomb', '1000000')).toBe('pollbomb: errno 0, 1000000 events\n');
  });

  it('pointers, lengths and offsets out of range are errnos and write nothing', async () => {
    // A 1 GiB path is ENAMETOOLONG, a 2 GiB iovec is charged first (EDQUOT), 2^31 iovecs are EINVAL,
    // pointers outside memory are EIO, offsets past 2^53 EINVAL.
    expect(await attack('oobpath')).toBe('oobpath: errno 37 29 44\n');
    expect(await attack('oobiov')).toBe('oobiov: errno 19 29 29 28 28 28, size 0\n');
  });
});

// With the wall off the JavaScript layer alone stands between the guest and the outside
// directory; walled, the outside directory is granted to the racing calls as /other, so it is in
// the wall's view (bound at its host path) and the link could reach it there too.
const variants: { name: string; tuning: Tuning }[] = [
  { name: 'the wall off: the JavaScript layer alone', tuning: { kernel: false, wall: false } },
  { name: `walled (${machineFacts().wall ? 'bubblewrap runs here' : `no wall on this machine: ${machineFacts().why.wall}`})`, tuning: { kernel: false } },
];

describe.each(variants)('a trailing slash never lets the kernel follow a symlink the walk did not check (two guests race), $name', ({ tuning }) => {
  it('open, stat and set-times of "x/" reach nothing outside while another guest swaps x for a link out', async () => {
    const shared = fresh();
    const data = path.join(shared, 'data');
    const outside = path.join(shared, 'outside');
    mkdirSync(data);
    mkdirSync(path.join(outside, 'sub'), { recursive: true });
    writeFileSync(path.join(outside, 'passwd'), 'outside\n');
    utimesSync(outside, 1_500_000_000, 1_500_000_000);
    const dirs = [{ host: data, guest: '/data' }];
    // The swapper flips /data/x between an empty directory and a symlink to ../outside.
    const swapper = await spawnGuest(opts(['slashswap', '/data', '../outside'], dirs, { grants: { network: { listen: [], connect: [] } } }), tuning);
    let swapOut = '';
    swapper.child.stdout?.on('data', (d: Buffer) => (swapOut += d.toString()));
    try {
      await waitFor(() => swapOut.includes('slashswap: started'), 20_000, 'the swapping guest to start');
      for (const cmd of ['slashopen', 'slashstat', 'slashtimes']) {
        const r = await run(opts([cmd, '/data', '100000', '200'], [...dirs, { host: outside, guest: '/other' }]), tuning);
        expect(r.exit, r.stderr).toEqual({ kind: 'exit', code: 0 });
        const m = new RegExp(`${cmd}: (\\d+) inside, (\\d+) outside`).exec(r.stdout);
        expect(m, r.stdout).not.toBeNull();
        // The race ran (some calls found the directory in place) and none went through the link.
        expect(Number(m?.[1]), r.stdout).toBeGreaterThan(0);
        expect(Number(m?.[2]), r.stdout).toBe(0);
      }
    } finally {
      await swapper.stop(2000);
    }
    expect(statSync(outside).mtimeMs).toBe(1_500_000_000_000);
  }, 120_000);
});

describe('a component stream kept past the drop of its descriptor', () => {
  it('writes nothing more: the file it reached by a reused host descriptor number stays empty, the grant holds', async () => {
    // fsstream.component (test/fixtures/guests/p2/fsstream.c): 768 KiB to `a` through one stream,
    // drop `a`'s descriptor, open `b`, then 768 KiB through a second stream of `a` made before the drop.
    const dir = fresh();
    const r = await run({ ...opts([], [{ host: dir, guest: '/data' }]), wasm: guest('fsstream.component') });
    expect(r.exit, r.stderr).toEqual({ kind: 'exit', code: 0 });
    expect(statSync(path.join(dir, 'a')).size).toBe(768 * 1024);
    expect(statSync(path.join(dir, 'b')).size).toBe(0);
  });
});

describe('a FIFO the host left in the directory', () => {
  it('switching on append (fcntl F_SETFL O_APPEND) does not block the guest in open(2) with no writer', async () => {
    const dir = fresh();
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    const g = await spawnGuest(opts(['fifo', '/data'], [{ host: dir, guest: '/data' }]), { kernel: false });
    let stdout = '';
    g.child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    let exit: unknown = null;
    void g.exited.then((e) => (exit = e));
    try {
      await waitFor(() => exit !== null, 10_000, 'the guest to exit (it blocked in the reopen before the fix)');
    } finally {
      if (exit === null) await g.stop(2000);
    }
    expect(exit).toEqual({ kind: 'exit', code: 0 });
    await waitFor(() => stdout.includes('\n'), 5000, 'its output');
    expect(stdout).toBe('fifo: setfl errno 0\n');
  });
});

describe('what held: escapes, read-only config, renumbering and quota edges', () => {
  it('each probe gets the refusal it should', async () => {
    const cfg = path.join(work, 'app.conf');
    writeFileSync(cfg, 'secret\n');
    utimesSync(cfg, 1_600_000_000, 1_600_000_000);
    const dir = fresh();
    const r = await run(opts(['misc', '/data'], [{ host: dir, guest: '/data' }], { config: [{ guest: '/cfg/app.conf', host: cfg }] }));
    expect(r.exit, r.stderr).toEqual({ kind: 'exit', code: 0 });
    const got = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split('=') as [string, string]));
    const EBUSY = '10', EINVAL = '28', EISDIR = '31', ENOENT = '44', ENOTDIR = '54', EPERM = '63', EROFS = '69', ENOTCAPABLE = '76', EBADF = '8', EDQUOT = '19', EFBIG = '22';
    expect(got).toEqual({
      rename_into_own_sub: EINVAL,
      rename_dot: EBUSY,
      rmdir_dotdot: EINVAL,
      unlink_dotdot: EISDIR,
      open_dotdot_root: ENOTCAPABLE,
      symlink_proc: EPERM,
      symlink_rel_up: '0',
      open_via_rel_up: ENOTCAPABLE,
      symlink_proc_rel: '0',
      open_via_proc_rel: ENOENT,
      open_empty_comp: '0',
      config_write: EROFS,
      config_trunc: EROFS,
      config_unlink: EROFS,
      config_rename_over: EROFS,
      config_rename_from: EROFS,
      config_link: EROFS,
      config_link_into: EROFS,
      config_symlink: EROFS,
      config_mkdir: EROFS,
      config_utimes: EROFS,
      ftruncate_huge: EDQUOT,
      ftruncate_neg: EINVAL,
      fallocate_huge: EDQUOT,
      pwrite_2_63: EINVAL,
      pwrite_2_53: EFBIG,
      lseek_neg: EINVAL,
      lseek_huge: EINVAL,
      big_size: '0',
      config_open_ro: '0',
      config_setfl_append: '0',
      config_write_after_append: EBADF,
      config_futimens: EROFS,
      config_ftruncate: EROFS,
      config_fallocate: EROFS,
      config_renumber_into_preopen: '0',
      open_below_renumbered: ENOTDIR,
    });
    expect(statSync(cfg).mtimeMs).toBe(1_600_000_000_000);
    expect(statSync(cfg).size).toBe(7);
  });
});
