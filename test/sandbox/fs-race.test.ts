import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnGuest } from '@lowcloud/sandbox';
import { guestOptions, waitFor } from '../helpers/guests.js';
import { machineFacts } from '../helpers/machine-facts.js';

/**
 * The rename race of issue 9 against the JavaScript layer: two real guests share a directory; one
 * swaps `t` between a real tree and a directory whose `s` is a host-made symlink to a directory
 * outside it, the other opens `t/s/etc/passwd` and creates `t/s/tmp/<mark>` meanwhile. The path
 * walk holds each directory by descriptor and never follows a link out, so nothing outside is
 * reached. Run with the wall off (`wall: false`: the JavaScript layer alone, so a walk that
 * followed the link would read the outside file) and walled. The outside directory is granted to
 * the opening guest as `/other`, so it is in the wall's view too (the wall binds a granted
 * directory at its host path): "nothing outside was read" cannot hold merely because the file is
 * absent from the view, as the host's /etc/passwd is.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-fs-race-'));
const mark = `lowcloud-race-${process.pid}`;
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(path.join('/tmp', mark), { force: true });
});

const variants: { name: string; tuning: NonNullable<Parameters<typeof spawnGuest>[1]> }[] = [
  { name: 'the wall off: the JavaScript layer alone', tuning: { kernel: false, wall: false } },
  { name: `walled (${machineFacts().wall ? 'bubblewrap runs here' : `no wall on this machine: ${machineFacts().why.wall}`})`, tuning: { kernel: false } },
];

describe.each(variants)('the two-guest rename race (a host-made symlink swapped in and out of the path), $name', ({ name, tuning }) => {
  it('reads and creates nothing outside the shared directory, though the outside file is in its view', async () => {
    const dir = path.join(work, name.replace(/\W+/g, '-'));
    const shared = path.join(dir, 'shared');
    const other = path.join(dir, 'other');
    mkdirSync(path.join(shared, 'a/s/etc'), { recursive: true });
    mkdirSync(path.join(shared, 'a/s/tmp'));
    writeFileSync(path.join(shared, 'a/s/etc/passwd'), 'inside\n');
    mkdirSync(path.join(other, 'etc'), { recursive: true });
    mkdirSync(path.join(other, 'tmp'));
    writeFileSync(path.join(other, 'etc/passwd'), 'outside\n');
    mkdirSync(path.join(shared, 'b'));
    symlinkSync(other, path.join(shared, 'b/s'));
    const opts = (args: string[], dirs = [{ host: shared, guest: '/data' }]) => guestOptions('fsattack', { args, dirs });

    const swapper = await spawnGuest(opts(['race-swap', '/data', '0']), tuning);
    let swapOut = '';
    swapper.child.stdout?.on('data', (d: Buffer) => (swapOut += d.toString()));
    await waitFor(() => swapOut.includes('race-swap: started'), 20_000, 'the swapping guest to start');

    const opener = await spawnGuest(opts(['race-open', '/data', '3000', mark], [{ host: shared, guest: '/data' }, { host: other, guest: '/other' }]), tuning);
    let openOut = '';
    opener.child.stdout?.on('data', (d: Buffer) => (openOut += d.toString()));
    expect(await opener.exited).toEqual({ kind: 'exit', code: 0 });
    await swapper.stop(2000);

    const m = /race-open: (\d+) inside, (\d+) outside, (\d+) created/.exec(openOut);
    expect(m, openOut).not.toBeNull();
    const [inside, outside] = [Number(m?.[1]), Number(m?.[2])];
    // The race ran (some opens found the real tree in place) and none reached the outside file.
    expect(inside).toBeGreaterThan(0);
    expect(outside).toBe(0);
    expect(existsSync(path.join(other, 'tmp', mark))).toBe(false);
    expect(existsSync(path.join('/tmp', mark))).toBe(false);
    expect(readFileSync(path.join(other, 'etc/passwd'), 'utf8')).toBe('outside\n');
  });
});
