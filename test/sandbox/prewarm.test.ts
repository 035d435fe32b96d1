import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';
import { machineFacts } from '../helpers/machine-facts.js';

// An agent runs the sandbox's machine probes (the wall around a Node.js start-up, ldd of what the
// wall binds) off its thread as it starts (prewarmSandbox), so its first starts do not run them
// synchronously on its event loop. Counted for real: every synchronous child process the sandbox
// starts goes through child_process.execFileSync, wrapped here before the sandbox is loaded.
const facts = machineFacts();
const script = (prewarm: boolean) => `
  import { createRequire, syncBuiltinESMExports } from 'node:module';
  const cp = createRequire(import.meta.url)('node:child_process');
  const orig = cp.execFileSync;
  const ran = [];
  cp.execFileSync = (file, ...rest) => { ran.push(file); return orig(file, ...rest); };
  syncBuiltinESMExports();
  const sb = await import(${JSON.stringify(path.join(repoRoot, 'packages/sandbox/dist/index.js'))});
  const iso = await import(${JSON.stringify(path.join(repoRoot, 'packages/sandbox/dist/host/isolation.js'))});
  if (${prewarm}) await sb.prewarmSandbox();
  ran.length = 0;
  const wall = sb.probeWall();
  iso.nodeView();
  process.stdout.write(JSON.stringify({ wall: wall.wall !== null, ran }));`;

describe.skipIf(!facts.wall)('prewarmSandbox', () => {
  it('leaves the wall probe and ldd answered, so the first start runs neither on the thread', () => {
    const run = (prewarm: boolean) => {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script(prewarm)], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { wall: boolean; ran: string[] };
    };
    const cold = run(false);
    expect(cold.wall).toBe(true);
    expect(cold.ran.length).toBeGreaterThan(0); // without it: bwrap and ldd, synchronously
    const warm = run(true);
    expect(warm).toEqual({ wall: true, ran: [] });
  }, 120_000);
});
