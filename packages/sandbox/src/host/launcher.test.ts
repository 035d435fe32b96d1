import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GuestCgroup, probeCgroups } from './cgroup.js';
import { launcherArgs } from './launcher.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
};

/** A guest cgroup as a guest host gets one, or why this machine cannot make one. */
function guestCgroup(): GuestCgroup | string {
  if (process.getuid?.() !== 0) return 'needs root';
  const probe = probeCgroups();
  if (probe.version === null || !probe.controllers.includes('memory')) return `no memory cgroup here: ${probe.reason}`;
  return GuestCgroup.create(probe.version, `g-test-${process.pid}-${Date.now()}`, { memoryBytes: 64 * 2 ** 20 }, probe.controllers);
}

/**
 * What is left in a guest's cgroups once its guest host has ended is killed, and the cgroups go: a
 * leftover process (seen: bubblewrap's child waiting for a parent that died while it started)
 * otherwise held them, and itself, for good.
 */
describe("a guest host's cgroups, once it has ended", () => {
  it('the launcher kills what its wall left in them, then removes them', { timeout: 20_000 }, async ({ skip }) => {
    const cg = guestCgroup();
    if (typeof cg === 'string') return skip(cg);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-launcher-'));
    const pidFile = path.join(dir, 'left');
    let left = 0;
    try {
      // The "wall" starts a process that outlives it (in the cgroups it was born in) and ends.
      const child = spawn('/bin/sh', launcherArgs(cg.all, null, false, null, null, [], ['/bin/sh', '-c', `sleep 300 </dev/null >/dev/null 2>&1 & echo $! >${pidFile}`]), { stdio: ['ignore', 'ignore', 'ignore', 'ignore', 'pipe'] });
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(code).toBe(0);
      left = Number(fs.readFileSync(pidFile, 'utf8'));
      expect(left).toBeGreaterThan(1);
      expect(alive(left)).toBe(false);
      for (const d of cg.all) expect(fs.existsSync(d)).toBe(false);
    } finally {
      if (left > 1 && alive(left)) process.kill(left, 'SIGKILL');
      cg.remove();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the host's own removal does too (a launcher killed on a failed start cleans nothing)", { timeout: 20_000 }, async ({ skip }) => {
    const cg = guestCgroup();
    if (typeof cg === 'string') return skip(cg);
    const sleeper = spawn('sleep', ['300'], { stdio: 'ignore' });
    const pid = sleeper.pid as number;
    try {
      for (const d of cg.all) fs.writeFileSync(path.join(d, 'cgroup.procs'), String(pid));
      cg.remove();
      await Promise.race([new Promise((r) => sleeper.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
      expect(alive(pid)).toBe(false);
      for (const d of cg.all) expect(fs.existsSync(d)).toBe(false);
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
      cg.remove();
    }
  });
});
