import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';
import { machineFacts } from '../helpers/machine-facts.js';

// The disk-image probe (mkfs.ext4, a loop mount, an unmount: tens of milliseconds, synchronous)
// runs once per process, however often the capabilities are read. Every agent `status` reads them:
// when the answer was "works" (null), `??=` took it for "not probed yet" and each status call
// mounted a test image on the agent's event loop (42 ms a call with no guests; 0.5 ms after).
// Counted for real: each probe makes a `lowcloud-probe-*` directory in the child's TMPDIR.
const facts = machineFacts();
const tmp = mkdtempSync(path.join(tmpdir(), 'lowcloud-probe-count-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
if (!facts.diskImages) console.warn(`probe-once: the disk-image probe cannot run here: ${facts.why.diskImages}`);

describe.skipIf(!facts.diskImages)('capabilities', () => {
  it('mounts a test image once per process, not once per read', async () => {
    const seen = new Set<string>();
    const w = watch(tmp, (_event, name) => {
      if (name?.startsWith('lowcloud-probe-') === true) seen.add(name);
    });
    const script = `const { probeCapabilities } = await import(${JSON.stringify(path.join(repoRoot, 'packages/sandbox/dist/index.js'))});
      const answers = [];
      for (let i = 0; i < 5; i++) answers.push((await probeCapabilities()).diskImages);
      process.stdout.write(JSON.stringify(answers));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TMPDIR: tmp }, encoding: 'utf8', timeout: 30_000 });
    await new Promise((res) => setTimeout(res, 200)); // the last inotify events
    w.close();
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([true, true, true, true, true]);
    expect(seen.size).toBe(1);
  });

  it('probes off the event loop where the asker can wait (an agent\'s status): timers keep firing while mkfs and mount run', () => {
    const script = `const { probeCapabilities } = await import(${JSON.stringify(path.join(repoRoot, 'packages/sandbox/dist/index.js'))});
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const t = performance.now();
      const caps = await probeCapabilities();
      clearInterval(timer);
      process.stdout.write(JSON.stringify({ works: caps.diskImages, ticks, ms: performance.now() - t }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TMPDIR: tmp }, encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { works: boolean; ticks: number; ms: number };
    expect(out.works).toBe(true);
    // Run synchronously (as before), not one timer fires until the probe is done.
    expect(out.ticks, `${out.ticks} timer ticks in the ${out.ms.toFixed(0)} ms of the probe`).toBeGreaterThanOrEqual(3);
  });

  it('where the test image cannot even be made (no temporary directory: a full disk is alike), both probes answer why, neither throws into status', () => {
    const script = `const { probeDiskImages, probeDiskImagesAsync } = await import(${JSON.stringify(path.join(repoRoot, 'packages/sandbox/dist/host/disk-image.js'))});
      process.stdout.write(JSON.stringify([probeDiskImages(), await probeDiskImagesAsync()]));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TMPDIR: path.join(tmp, 'missing') }, encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const [sync, async] = JSON.parse(r.stdout) as [string, string];
    expect(sync).toMatch(/test image could not be made: ENOENT/);
    expect(async).toBe(sync);
  });
});
