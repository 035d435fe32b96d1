import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Errno, WasiError } from './errno.js';
import { DiskQuota, resolvePath, usageOf, type Mount } from './fs.js';

const root = mkdtempSync(path.join(tmpdir(), 'lowcloud-fs-'));
mkdirSync(path.join(root, 'sub'));
writeFileSync(path.join(root, 'sub/file'), 'hello');
symlinkSync('/etc', path.join(root, 'out'));
symlinkSync('/', path.join(root, 'sub/rootlink'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const mount: Mount = { guest: '/data', host: root, readonly: false };

const errnoOf = (f: () => unknown): number | null => {
  try {
    f();
    return null;
  } catch (err) {
    return err instanceof WasiError ? err.errno : -1;
  }
};

describe('resolvePath', () => {
  it('resolves inside the mount', () => {
    expect(resolvePath(mount, [], 'sub/./file').resolved).toEqual({ kind: 'host', path: path.join(root, 'sub/file'), mount });
    expect(resolvePath(mount, ['sub'], '../sub/file').resolved).toMatchObject({ path: path.join(root, 'sub/file') });
  });

  it('refuses .., absolute paths and any symlink on the way', () => {
    expect(errnoOf(() => resolvePath(mount, [], '../etc/passwd'))).toBe(Errno.NOTCAPABLE);
    expect(errnoOf(() => resolvePath(mount, ['sub'], '../../x'))).toBe(Errno.NOTCAPABLE);
    expect(errnoOf(() => resolvePath(mount, [], '/etc/passwd'))).toBe(Errno.NOTCAPABLE);
    expect(errnoOf(() => resolvePath(mount, [], 'out/passwd'))).toBe(Errno.NOTCAPABLE);
    expect(errnoOf(() => resolvePath(mount, [], 'sub/rootlink'))).toBe(Errno.NOTCAPABLE);
  });

  it('shows only the granted files of a config mount', () => {
    const cfg: Mount = { guest: '/etc', host: new Map([['app.conf', path.join(root, 'sub/file')]]), readonly: true };
    expect(resolvePath(cfg, [], 'app.conf').resolved).toMatchObject({ kind: 'config-file', path: path.join(root, 'sub/file') });
    expect(errnoOf(() => resolvePath(cfg, [], 'passwd'))).toBe(Errno.NOENT);
  });
});

describe('DiskQuota', () => {
  it('charges growth and refuses past the limit with EDQUOT', () => {
    const q = new DiskQuota(0, 100);
    q.charge(60);
    expect(errnoOf(() => q.charge(41))).toBe(Errno.DQUOT);
    q.credit(60);
    q.charge(100);
    expect(q.used).toBe(100);
  });

  it('counts existing bytes without following symlinks', () => {
    expect(usageOf(root)).toBe(5);
  });
});
