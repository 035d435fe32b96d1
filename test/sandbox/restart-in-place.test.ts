import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attachGuest, spawnGuest, type GuestHandle, type GuestOptions } from '@lowcloud/sandbox';
import { repoRoot } from '../helpers/cli.js';
import { alive, waitFor } from '../helpers/guests.js';

/**
 * A detached `process` guest (as the agent runs them) started again with new config files in the
 * guest host it runs in: same process, same wall and cgroups, a new thread with the new boot. A
 * change that is more than config (its arguments here) is a fresh guest host.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-restart-'));
const pids = new Set<number>();
afterAll(() => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

const runDir = path.join(work, 'run', 'p');
const dataDir = path.join(work, 'data');
const log = path.join(work, 'p.log');
const read = () => {
  try {
    return readFileSync(log, 'utf8');
  } catch {
    return '';
  }
};
function options(n: number, extra: Partial<GuestOptions> = {}): GuestOptions {
  const conf = path.join(work, `hello-${n}.conf`);
  writeFileSync(conf, `greeting ${n}\n`);
  const out = { file: log, maxBytes: 1 << 20, keep: 1 };
  return {
    wasm: path.join(repoRoot, 'examples/hello/bin/hello.wasm'),
    args: ['/etc/hello.conf', '60'],
    env: {},
    dirs: [{ host: dataDir, guest: '/data' }],
    config: [{ guest: '/etc/hello.conf', host: conf }],
    grants: { memory: 32 * 2 ** 20, network: { listen: [], connect: [] } },
    stdout: out,
    stderr: out,
    detached: true,
    runDir,
    cacheDir: path.join(work, 'cache'),
    tag: `spec-${n}`,
    ...extra,
  };
}

describe('a process guest started again in place (replace-config)', () => {
  it('runs its new config in the same guest host, keeps its data, ends the old guest as stopped; also once re-attached; more than config is a fresh host', { timeout: 60_000 }, async () => {
    mkdirSync(runDir, { recursive: true });
    mkdirSync(dataDir, { recursive: true });
    const first = await spawnGuest(options(1));
    pids.add(first.pid);
    await waitFor(() => read().includes('greeting 1, world! (start #1)'), 20_000, 'the first config to run');

    const second = (await first.restart?.(options(2))) as GuestHandle;
    expect(second).toBeDefined();
    expect(second.pid).toBe(first.pid);
    expect(second.host).toBe(first.host);
    expect(await first.exited).toEqual({ kind: 'stopped' });
    // The new config file (not bound in the wall when the host started) and the same data directory.
    await waitFor(() => read().includes('greeting 2, world! (start #2)'), 10_000, 'the second config to run in the same host');
    expect(alive(first.pid)).toBe(true);

    // Re-attached (an agent restart): the record names the guest that runs now, and restarts it in place too.
    second.detach();
    const attached = (await attachGuest(runDir)) as GuestHandle;
    expect(attached.pid).toBe(first.pid);
    expect(attached.tag).toBe('spec-2');
    const third = (await attached.restart?.(options(3))) as GuestHandle;
    expect(third.pid).toBe(first.pid);
    expect(await attached.exited).toEqual({ kind: 'stopped' });
    await waitFor(() => read().includes('greeting 3, world! (start #3)'), 10_000, 'the third config to run in the same host');
    third.detach();
    expect((await attachGuest(runDir))?.tag).toBe('spec-3');

    // Other arguments: not a config change, so a guest host of its own again (the old one ends).
    const reattached = (await attachGuest(runDir)) as GuestHandle;
    const fourth = (await reattached.restart?.(options(4, { args: ['/etc/hello.conf', '59'] }))) as GuestHandle;
    pids.add(fourth.pid);
    expect(fourth.pid).not.toBe(first.pid);
    await waitFor(() => !alive(first.pid), 10_000, 'the old guest host to end');
    await waitFor(() => read().includes('greeting 4, world! (start #4)'), 20_000, 'the fourth config to run in a new host');
    expect(await fourth.stop(2000)).toEqual({ kind: 'stopped' });
    expect(alive(fourth.pid)).toBe(false);
  });
});
