import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnGuest } from '@lowcloud/sandbox';
import { guestOptions, waitFor } from '../helpers/guests.js';

/**
 * The rename race of issue 9, in the JavaScript layer alone (no kernel wall): two real guests share
 * a directory; one swaps `t` between a real tree and a directory whose `s` is a host-made symlink
 * to `/`, the other opens `t/s/etc/passwd` and creates `t/s/tmp/<mark>` meanwhile. The path walk
 * holds each directory by descriptor and never follows a link out, so nothing outside is reached.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-fs-race-'));
const mark = `lowcloud-race-${process.pid}`;
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(path.join('/tmp', mark), { force: true });
});

const opts = (args: string[]) => guestOptions('fsattack', { args, dirs: [{ host: work, guest: '/data' }] });

describe('the two-guest rename race (a host-made symlink swapped in and out of the path)', () => {
  it('reads and creates nothing outside the shared directory', async () => {
    mkdirSync(path.join(work, 'a/s/etc'), { recursive: true });
    mkdirSync(path.join(work, 'a/s/tmp'));
    writeFileSync(path.join(work, 'a/s/etc/passwd'), 'inside\n');
    mkdirSync(path.join(work, 'b'));
    symlinkSync('/', path.join(work, 'b/s'));

    const swapper = await spawnGuest(opts(['race-swap', '/data', '0']), { kernel: false });
    let swapOut = '';
    swapper.child.stdout?.on('data', (d: Buffer) => (swapOut += d.toString()));
    await waitFor(() => swapOut.includes('race-swap: started'), 20_000, 'the swapping guest to start');

    const opener = await spawnGuest(opts(['race-open', '/data', '3000', mark]), { kernel: false });
    let openOut = '';
    opener.child.stdout?.on('data', (d: Buffer) => (openOut += d.toString()));
    expect(await opener.exited).toEqual({ kind: 'exit', code: 0 });
    await swapper.stop(2000);

    const m = /race-open: (\d+) inside, (\d+) outside, (\d+) created/.exec(openOut);
    expect(m, openOut).not.toBeNull();
    const [inside, outside] = [Number(m?.[1]), Number(m?.[2])];
    // The race ran (some opens found the real tree in place) and none reached the host's /etc/passwd.
    expect(inside).toBeGreaterThan(0);
    expect(outside).toBe(0);
    expect(existsSync(path.join('/tmp', mark))).toBe(false);
  });
});
