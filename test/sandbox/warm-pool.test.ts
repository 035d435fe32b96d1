import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnGuest, startWarmHost, warmHostReady, warmPoolRefusal, type GuestHandle, type GuestOptions } from '@lowcloud/sandbox';
import { alive, cgroupDirOf, guest, guestOptions, waitFor } from '../helpers/guests.js';

/**
 * Warm hosts through the sandbox alone (host/warm-pool.ts): a `process` guest given the uid of a
 * running warm host takes it when it fits, and then the host is its alone: its memory grant holds
 * exactly inside, a guest that computes is stopped by the host's kill, and the host ends with it. A
 * guest that does not fit (a component) starts cold, and the warm host of its uid ends: the uid is
 * that guest's now. Needs root, memory and cpu cgroups and a Node.js with JSPI.
 */
const refusal = warmPoolRefusal({ requireWall: true });
const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-warm-'));
// Uids near the top of lowcloud's range (node-agent uids.ts), below the wall probe's.
let nextUid = 2046885600;
const handles: GuestHandle[] = [];
afterAll(async () => {
  // Cleanup only: a test that failed midway may leave a guest running; one its test stopped, or
  // that ended with its host, has nothing left to stop, and what a stop says here is no test's result.
  await Promise.all(handles.map((h) => h.stop(500).catch(() => undefined)));
  rmSync(dir, { recursive: true, force: true });
});

/** A warm host for a new uid, running and past its start-up; its uid and pid. */
async function warmHost(): Promise<{ uid: number; pid: number }> {
  const uid = nextUid++;
  expect(await startWarmHost(uid, path.join(dir, 'run'), { requireWall: true })).toBe(true);
  expect(warmHostReady(uid)).toBe(true);
  // Its pid is known once the wall has exec'd Node.js as its uid.
  await waitFor(() => sharedHostPid(uid) !== 0, 10_000, 'the warm host running as its uid');
  return { uid, pid: sharedHostPid(uid) };
}

/** The pid of the shared guest host process running as `uid`. */
function sharedHostPid(uid: number): number {
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const status = readFileSync(`/proc/${n}/status`, 'utf8');
      if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) === uid && readFileSync(`/proc/${n}/cmdline`, 'utf8').includes('guest/shared.js')) return Number(n);
    } catch {
      // ended meanwhile
    }
  }
  return 0;
}

const logOf = (name: string) => path.join(dir, `${name}.log`);
const opts = (name: string, uid: number, extra: Partial<GuestOptions> = {}): GuestOptions =>
  guestOptions(name, { uid, detached: true, runDir: path.join(dir, 'run', `${name}-${uid}`), stdout: { file: logOf(name), maxBytes: 1 << 20, keep: 0 }, stderr: { file: logOf(name), maxBytes: 1 << 20, keep: 0 }, ...extra });
const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

describe.skipIf(refusal !== null)(`warm hosts in the sandbox${refusal === null ? '' : ` (skipped: ${refusal})`}`, () => {
  it('a guest in a warm host gets exactly its memory grant, ends alone, and its host ends with it', { timeout: 60_000 }, async () => {
    const { uid, pid } = await warmHost();
    const h = await spawnGuest(opts('memhog', uid, { args: ['64'], grants: { memory: 16 << 20, network: { listen: [], connect: [] } } }), { requireWall: true });
    handles.push(h);
    expect(h.pid).toBe(pid);
    expect(h.report.isolation.at(-1)?.mechanism).toMatch(/warm pool\) and taken by this guest alone/);
    expect(await h.exited).toEqual({ kind: 'exit', code: 0 });
    // malloc returned NULL below 16 MiB: the linear memory maximum is the grant.
    expect(read(logOf('memhog'))).toMatch(/^allocated (\d|1[0-5]) MiB then malloc returned NULL/m);
    await waitFor(() => !alive(pid), 10_000, 'the warm host gone with its guest');
  });

  it('a guest whose memory grant is above the warm host\'s first limit takes it: its cgroup\'s limit rises (on v1, memory+swap first)', { timeout: 60_000 }, async () => {
    const { uid, pid } = await warmHost();
    const h = await spawnGuest(opts('sleeper', uid, { grants: { memory: 256 << 20, network: { listen: [], connect: [] } } }), { requireWall: true });
    handles.push(h);
    expect(h.pid).toBe(pid);
    const memDir = cgroupDirOf(pid, 'memory');
    const v2 = existsSync(path.join(memDir, 'memory.max'));
    expect(Number(read(path.join(memDir, v2 ? 'memory.max' : 'memory.limit_in_bytes')))).toBe((256 + 96) * 2 ** 20);
    if (!v2 && existsSync(path.join(memDir, 'memory.memsw.limit_in_bytes'))) expect(Number(read(path.join(memDir, 'memory.memsw.limit_in_bytes')))).toBe((256 + 96) * 2 ** 20);
    expect(await h.stop(500)).toEqual({ kind: 'stopped' });
    await waitFor(() => !alive(pid), 10_000, 'the warm host gone with its guest');
  });

  it('a guest that computes without waiting is stopped by its host\'s kill', { timeout: 60_000 }, async () => {
    const { uid, pid } = await warmHost();
    const h = await spawnGuest(opts('spin', uid, { args: ['600'], grants: { cpu: 0.5, network: { listen: [], connect: [] } } }), { requireWall: true });
    handles.push(h);
    expect(h.pid).toBe(pid);
    await new Promise((r) => setTimeout(r, 300));
    expect(await h.stop(500)).toEqual({ kind: 'stopped' });
    await waitFor(() => !alive(pid), 10_000, 'the warm host killed');
  });

  it('a start that fails (a binary that does not admit, a config file that cannot be read) leaves no warm host idle or half taken', { timeout: 60_000 }, async () => {
    const bad = path.join(dir, 'bad.wasm');
    writeFileSync(bad, 'not a module');
    const first = await warmHost();
    await expect(spawnGuest(opts('bad', first.uid, { wasm: bad }), { requireWall: true })).rejects.toThrow();
    await waitFor(() => !alive(first.pid), 10_000, 'the warm host of a binary that did not admit ended');
    const second = await warmHost();
    await expect(spawnGuest(opts('sleeper', second.uid, { config: [{ host: path.join(dir, 'missing.conf'), guest: '/etc/x.conf' }] }), { requireWall: true })).rejects.toThrow(/ENOENT/);
    await waitFor(() => !alive(second.pid), 10_000, 'the warm host taken for a config that could not be read ended');
  });

  it('a component given a warm host\'s uid starts cold, and the warm host ends', { timeout: 60_000 }, async () => {
    const { uid, pid } = await warmHost();
    const h = await spawnGuest(opts('secretdigest', uid, { wasm: guest('secretdigest.component') }), { requireWall: true });
    handles.push(h);
    expect(h.pid).not.toBe(pid);
    expect(h.report.isolation.map((l) => l.mechanism).join('\n')).not.toMatch(/warm pool/);
    await waitFor(() => !alive(pid), 10_000, 'the unused warm host ended');
    expect(warmHostReady(uid)).toBe(false);
    await h.stop(1000); // it prints its digests and sleeps
  });
});
