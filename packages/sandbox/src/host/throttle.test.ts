import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { processTree, rssBytes, treeCpuSeconds, treeRssBytes } from './proc.js';
import { CpuThrottle } from './throttle.js';

/**
 * The runtime CPU and memory layers act on every process of a guest host, not one pid (issue 17):
 * a real process whose children do the work. (Inside the wall every process of the guest host's
 * pid namespace is a descendant of it: orphans are re-parented to its pid 1.)
 */
let parent: ChildProcess | null = null;
afterEach(() => {
  if (parent?.pid === undefined) return;
  for (const p of processTree(parent.pid).reverse()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  parent = null;
});

/** A parent that starts `n` children running `child`, and idles. */
async function family(n: number, child: string): Promise<number> {
  parent = spawn(process.execPath, ['-e', `const cp = require('child_process'); for (let i = 0; i < ${n}; i++) cp.spawn(process.execPath, ['-e', ${JSON.stringify(child)}], { stdio: 'ignore' }); setInterval(() => {}, 1000);`], { stdio: 'ignore' });
  const pid = parent.pid as number;
  for (let i = 0; i < 100 && processTree(pid).length < n + 1; i++) await new Promise((r) => setTimeout(r, 50));
  expect(processTree(pid).length).toBe(n + 1);
  return pid;
}

describe('runtime layers over the whole process tree', () => {
  it('the CPU throttle holds a parent whose two children spin to its grant together', async () => {
    const pid = await family(2, 'for (;;) {}');
    const t = new CpuThrottle(pid, 0.3).start();
    try {
      await new Promise((r) => setTimeout(r, 500));
      const c0 = treeCpuSeconds(processTree(pid)) as number;
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 3000));
      const share = ((treeCpuSeconds(processTree(pid)) as number) - c0) / ((performance.now() - t0) / 1000);
      // Unthrottled, the two children alone would use up to 2 cores.
      expect(share).toBeLessThan(0.3 * 1.25);
      expect(share).toBeGreaterThan(0.05);
    } finally {
      t.stop();
    }
  });

  it('the memory watchdog counts a child holding memory with its parent', async () => {
    const pid = await family(1, 'const b = Buffer.alloc(150 * 2 ** 20, 1); setInterval(() => b[0]++, 1000);');
    for (let i = 0; i < 100 && (treeRssBytes(pid) ?? 0) < 150 * 2 ** 20; i++) await new Promise((r) => setTimeout(r, 50));
    expect(treeRssBytes(pid)).toBeGreaterThan(150 * 2 ** 20);
    expect(rssBytes(pid)).toBeLessThan(100 * 2 ** 20);
  });
});
