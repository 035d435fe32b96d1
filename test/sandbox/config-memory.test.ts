import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnGuest } from '@lowcloud/sandbox';
import { fnv1a64, guestOptions, waitFor } from '../helpers/guests.js';

/**
 * A config file given by content (an opened sealed secret, issue 20) is served by the guest host
 * from memory, read-only, to preview1 modules and WASI 0.2 components alike: no host file holds it.
 */

const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-cfgmem-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Bytes no text file would hold, with a NUL and invalid UTF-8: they must arrive exactly.
const content = new Uint8Array([0x00, 0xff, 0xfe, ...Buffer.from('tok=s3cr3t\n'), 0x80]);

describe('config files held in memory', () => {
  for (const wasm of ['secretdigest', 'secretdigest.component']) {
    it(`${wasm}: reads the exact bytes, and a write is refused`, async () => {
      const g = await spawnGuest(guestOptions(wasm, { args: ['SECRET', '/etc/lowcloud/secret.conf'], env: { SECRET: 'hunter2' }, config: [{ guest: '/etc/lowcloud/secret.conf', content }] }), { kernel: false });
      let out = '';
      g.child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await waitFor(() => out.includes('write:'), 20_000, 'the guest to report');
      } finally {
        await g.stop(100);
      }
      expect(out).toContain(`env SECRET fnv1a64=${fnv1a64(Buffer.from('hunter2'))} len=7`);
      expect(out).toContain(`file /etc/lowcloud/secret.conf fnv1a64=${fnv1a64(content)} len=${content.length}`);
      expect(out).toContain('file /etc/lowcloud/secret.conf write: refused');
    });
  }

  it('the fsredteam probes of a config file get the same refusals from a memory file', async () => {
    const g = await spawnGuest(guestOptions('fsredteam', { args: ['misc', '/data'], dirs: [{ host: work, guest: '/data' }], config: [{ guest: '/cfg/app.conf', content: Buffer.from('secret\n') }] }), { kernel: false });
    let out = '';
    g.child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await g.exited;
    await new Promise((r) => setImmediate(r));
    const got = Object.fromEntries(out.trim().split('\n').map((l) => l.split('=') as [string, string]));
    const EROFS = '69', EBADF = '8';
    expect(Object.fromEntries(Object.entries(got).filter(([k]) => k.startsWith('config_')))).toEqual({
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
      config_open_ro: '0',
      config_setfl_append: '0',
      config_write_after_append: EBADF,
      config_futimens: EROFS,
      config_ftruncate: EROFS,
      config_fallocate: EROFS,
      config_renumber_into_preopen: '0',
    });
  });
});
