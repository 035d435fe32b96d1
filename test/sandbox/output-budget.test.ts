import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jspiNode, spawnGuest, type GuestHandle } from '@lowcloud/sandbox';
import { alive, guestOptions, waitFor } from '../helpers/guests.js';

/**
 * A guest's output costs the process that writes its log (the agent) at most its budget:
 * 16 MiB a second after 64 MiB at once (common/output-budget.ts). Before it, a `process` guest
 * granted 0.2 cores that wrote without pause had its agent write over 100 MiB/s of log on 72-74%
 * of a core; a `shared` guest that wrote 64 MiB in one go ended its host and every guest in it.
 */
const MiB = 2 ** 20;
const BURST = 64 * MiB;
const RATE = 16 * MiB;
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-output-budget-'));
const handles: GuestHandle[] = [];
afterAll(async () => {
  // Cleanup only: a test that failed midway may leave a guest running; one its test stopped, or
  // that ended, has nothing left to stop, and whatever a stop says here is no test's result.
  await Promise.all(handles.map((h) => h.stop(2000).catch(() => undefined)));
  rmSync(work, { recursive: true, force: true });
});

/** A log's text ('' before its first byte). */
const read = (file: string) => (existsSync(file) ? readFileSync(file, 'latin1') : '');
/** Bytes in a log and its rotated file. */
const logged = (file: string) => [file, `${file}.1`].reduce((n, f) => n + (existsSync(f) ? statSync(f).size : 0), 0);

describe('the output budget of a guest', () => {
  it('a process guest that writes without pause is read at its budget: it waits in its writes (nothing dropped), and reading it costs this process little', { timeout: 60_000 }, async () => {
    const file = path.join(work, 'flood.log');
    // Large enough that only a pump past the budget rotates it within the test's window.
    const out = { file, maxBytes: 256 * MiB, keep: 1 };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const g = await spawnGuest(guestOptions('flood', { stdout: out, stderr: out, cacheDir: path.join(work, 'cache') }));
    handles.push(g);
    await waitFor(() => logged(file) >= BURST, 30_000, 'the burst to be written');
    await new Promise((r) => setTimeout(r, 2000));
    const seconds = (performance.now() - t0) / 1000;
    const bytes = logged(file);
    const cpu = process.cpuUsage(cpu0);
    // The burst, the rate over the window, and what a pipe and a socket buffer hold.
    expect(existsSync(`${file}.1`)).toBe(false);
    expect(bytes).toBeLessThanOrEqual(BURST + RATE * seconds + 2 * MiB);
    expect(alive(g.pid)).toBe(true);
    // Every byte is the guest's (flood writes 'y'), none lost in the middle of the file.
    expect(readFileSync(file, 'latin1').replaceAll('y', '')).toBe('');
    // Unbudgeted, reading it took this process most of a core for the whole window.
    expect((cpu.user + cpu.system) / 1e6).toBeLessThan(0.5 * seconds);
    expect(await g.stop(2000)).toEqual({ kind: 'stopped' });
  });

  it.skipIf(jspiNode() === null)('a shared guest past its budget: the rest of what it wrote is dropped, its log says how much, and a guest beside it in the same host runs on', { timeout: 60_000 }, async () => {
    const opts = (name: string, wasm: string, args: string[]) => {
      const out = { file: path.join(work, `${name}.log`), maxBytes: 256 * MiB, keep: 1 };
      return guestOptions(wasm, { args, isolation: 'shared', grants: { memory: 16 * MiB, network: { listen: [], connect: [] } }, stdout: out, stderr: out, cacheDir: path.join(work, 'cache') });
    };
    // 96 single writes of 1 MiB at once, then "done" on stderr, then sleeps.
    const big = await spawnGuest(opts('big', 'bigwrite', ['96', String(MiB)]));
    handles.push(big);
    const file = path.join(work, 'big.log');
    await waitFor(() => /bytes of this guest's output dropped/.test(read(file).slice(-512)), 30_000, 'the note of what was dropped');
    const text = read(file);
    const note = /\[lowcloud: (\d+) bytes of this guest's output dropped: over its budget of 16 MiB a second after 64 MiB at once\]\n/.exec(text);
    expect(note).not.toBeNull();
    // What reached the log is the burst, in whole writes; the rest, "done" among it, is counted as dropped.
    const kept = text.length - (note?.[0].length ?? 0);
    expect(kept).toBeLessThanOrEqual(BURST);
    expect(kept % MiB).toBe(0);
    expect(kept + Number(note?.[1])).toBe(96 * MiB + 'done\n'.length);
    expect(logged(file)).toBe(text.length);
    // Its host runs on and takes another guest, whose output is its own budget's.
    const next = await spawnGuest(opts('next', 'hello', []));
    handles.push(next);
    expect(next.host).toBe(big.host);
    expect(await next.exited).toEqual({ kind: 'exit', code: 0 });
    await waitFor(() => read(path.join(work, 'next.log')).includes('to stderr'), 10_000, 'the next guest to print');
    expect(alive(big.pid)).toBe(true);
  });
});
