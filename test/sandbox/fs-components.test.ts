import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeCapabilities } from '@lowcloud/sandbox';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { runCli } from '../helpers/cli.js';
import { guest, waitFor } from '../helpers/guests.js';

/**
 * WASI 0.2 components get writable directories and the disk grant, through the same enforcement
 * core as preview1 modules (fs-quota.test.ts runs the attacks against both): with `lowcloud run
 * --dir` and as agent processes with their data directory.
 */
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-fs-components-'));
const fx = useAgentFixture();
let agent: RunningAgent;
beforeAll(async () => {
  agent = await fx.start();
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('components: /data with the disk grant', () => {
  it('lowcloud run app.component.wasm --dir ./d::/data --disk 1MiB writes there, and --verbose says how it is enforced', async () => {
    const dir = path.join(work, 'd');
    mkdirSync(dir);
    const r = await runCli(['run', guest('fsattack.component'), '--dir', './d::/data', '--disk', '1MiB', '--verbose', '--', 'write', '/data'], { cwd: work });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('read back: written by the guest\n');
    expect(r.stderr).toMatch(/^ {2}disk +runtime +byte quota 1048576 on writable directories/m);
    expect(readFileSync(path.join(dir, 'hello0'), 'utf8')).toBe('written by the guest\n');
  });

  it('an agent process that is a component keeps its files in its data directory (the kernel disk layer where available)', async () => {
    const caps = await probeCapabilities();
    const c = await fx.connect(agent);
    const spec = await uploadSpec(c, 'keeper', guest('fsattack.component'), { args: ['keep', '/data'], grants: { disk: 2 ** 20, network: { listen: [], connect: [] } } });
    await c.start(spec);
    const kept = path.join(fx.stateDir, 'data', 'keeper', 'kept0');
    await waitFor(() => {
      try {
        return readFileSync(kept, 'utf8') === 'kept by the guest\n';
      } catch {
        return false;
      }
    }, 30_000, 'the component to write its data file');
    const st = (await c.status()).processes.find((p) => p.name === 'keeper');
    expect(st?.state).toBe('running');
    const disk = st?.enforcement?.disk ?? [];
    expect(disk.some((e) => e.level === 'runtime' && e.mechanism.startsWith('byte quota 1048576 on writable directories'))).toBe(true);
    if (caps.diskImages) expect(disk[0]?.mechanism).toMatch(/^ext4 image of \d+ bytes loop-mounted at the directory/);
    else console.log(`kernel disk layer unavailable here (root: ${caps.root}; needs mkfs.ext4, mount and loop devices): runtime layer only`);
    await c.stop('keeper');
    c.close();
  });
});
