import { linkSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { usageOf } from '../../common/usage.js';
import { HostDir, type OpenRequest } from './dir.js';
import { Errno, errnoOf } from './errno.js';
import { Ledger } from './ledger.js';

const root = mkdtempSync(path.join(tmpdir(), 'lowcloud-walk-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(path.join(root, 'jail/sub'), { recursive: true });
writeFileSync(path.join(root, 'jail/sub/file'), 'hello');
writeFileSync(path.join(root, 'secret'), 'outside');
symlinkSync('/etc', path.join(root, 'jail/abs'));
symlinkSync('../secret', path.join(root, 'jail/up'));
symlinkSync('sub/file', path.join(root, 'jail/rel'));
symlinkSync('sub', path.join(root, 'jail/subdir'));
symlinkSync('loop', path.join(root, 'jail/loop'));

const ledger = new Ledger(0, Infinity);
const jail = HostDir.openRoot(path.join(root, 'jail'), false, ledger);
const read: OpenRequest = { follow: true, create: false, exclusive: false, truncate: false, directory: false, read: true, write: false, append: false, sync: 'none' };
const errno = (f: () => unknown): number | null => {
  try {
    f();
    return null;
  } catch (err) {
    return errnoOf(err);
  }
};
const text = (rel: string, follow = true) => {
  const f = jail.open(rel, { ...read, follow });
  if (f.kind !== 'file') throw new Error('not a file');
  const b = new Uint8Array(64);
  const n = f.read([b], 0);
  f.close();
  return Buffer.from(b.subarray(0, n)).toString();
};

describe('the path walk', () => {
  it('follows symlinks that stay inside, one component at a time', () => {
    expect(text('rel')).toBe('hello');
    expect(text('subdir/file')).toBe('hello');
    expect(text('sub/../subdir/./file')).toBe('hello');
  });

  it('refuses absolute paths, .. above the directory, links to absolute paths or above it, and ends loops with ELOOP', () => {
    expect(errno(() => text('/etc/passwd'))).toBe(Errno.NOTCAPABLE);
    expect(errno(() => text('sub/../../secret'))).toBe(Errno.NOTCAPABLE);
    expect(errno(() => text('abs/passwd'))).toBe(Errno.NOTCAPABLE);
    expect(errno(() => text('up'))).toBe(Errno.NOTCAPABLE);
    expect(errno(() => text('loop'))).toBe(Errno.LOOP);
    // Not following the final link: the kernel's O_NOFOLLOW says ELOOP.
    expect(errno(() => text('rel', false))).toBe(Errno.LOOP);
  });

  it('holds directories by descriptor: renaming the directory on the host changes nothing for the guest', () => {
    const moved = HostDir.openRoot(path.join(root, 'jail/sub'), false, ledger);
    renameSync(path.join(root, 'jail/sub'), path.join(root, 'jail/sub2'));
    symlinkSync('/etc', path.join(root, 'jail/sub'));
    try {
      const f = moved.open('file', read);
      expect(f.kind).toBe('file');
      f.close();
    } finally {
      rmSync(path.join(root, 'jail/sub'));
      renameSync(path.join(root, 'jail/sub2'), path.join(root, 'jail/sub'));
      moved.close();
    }
  });

  it('guest-made links work inside and lead nowhere outside', () => {
    jail.symlink('sub/file', 'mine');
    expect(text('mine')).toBe('hello');
    expect(errno(() => jail.symlink('/etc/passwd', 'abs2'))).toBe(Errno.PERM);
    jail.symlink('../secret', 'up2');
    expect(errno(() => text('up2'))).toBe(Errno.NOTCAPABLE);
    jail.link('sub/file', false, jail, 'hard');
    expect(readFileSync(path.join(root, 'jail/hard'), 'utf8')).toBe('hello');
  });
});

describe('the quota ledger', () => {
  it('charges and refuses past the limit with EDQUOT, and gives back', () => {
    const q = new Ledger(0, 100);
    q.charge(60);
    expect(errno(() => q.charge(41))).toBe(Errno.DQUOT);
    q.credit(60);
    q.charge(100);
    expect(q.used).toBe(100);
  });

  it('a file removed while open stays charged until its last close', () => {
    const dir = mkdtempSync(path.join(root, 'q-'));
    const q = new Ledger(usageOf(dir), 1 << 20);
    const d = HostDir.openRoot(dir, false, q);
    const f = d.open('f', { ...read, create: true, write: true });
    if (f.kind !== 'file') throw new Error('not a file');
    f.write([new Uint8Array(1000)], 0);
    expect(q.used).toBe(4096 + 1000);
    d.unlink('f');
    expect(q.used).toBe(1000);
    f.close();
    expect(q.used).toBe(0);
    d.close();
  });
});

describe('usageOf', () => {
  it('counts an entry per name and a file once however many links it has, never following symlinks', () => {
    const dir = mkdtempSync(path.join(root, 'u-'));
    writeFileSync(path.join(dir, 'a'), 'x'.repeat(10));
    linkSync(path.join(dir, 'a'), path.join(dir, 'b'));
    symlinkSync('/', path.join(dir, 'root'));
    mkdirSync(path.join(dir, 'd'));
    expect(usageOf(dir)).toBe(4 * 4096 + 10);
  });
});
