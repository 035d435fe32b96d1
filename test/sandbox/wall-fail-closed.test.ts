import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LowcloudError } from '@lowcloud/api';
import { useAgentFixture, uploadSpec } from '../helpers/agent.js';
import { runCli } from '../helpers/cli.js';
import { alive, guest, waitFor } from '../helpers/guests.js';

/**
 * The wall fails closed (issue 17): an agent on a machine whose bubblewrap is broken refuses a
 * guest it cannot wall (GRANT_UNAVAILABLE, naming what failed and the fix), says so in status,
 * and probes again (a repaired bubblewrap is used without a restart); with --allow-unwalled it
 * runs the guest without the wall and says that instead. bubblewrap is broken for real: each agent
 * runs in a private mount namespace where a failing program is bound over /usr/bin/bwrap.
 */
const fx = useAgentFixture();
const root = process.getuid?.() === 0;
const bwrap = '/usr/bin/bwrap';

function brokenBwrap(): string[] {
  const dir = path.join(fx.dir, 'broken');
  mkdirSync(dir, { recursive: true });
  const fake = path.join(dir, 'bwrap');
  writeFileSync(fake, '#!/bin/sh\necho "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n', { mode: 0o755 });
  return ['/usr/bin/unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', 'mount --bind "$0" /usr/bin/bwrap && exec "$@"', fake];
}

describe.skipIf(!root || !existsSync(bwrap))('an agent whose bubblewrap is broken', () => {
  it('refuses the guest (GRANT_UNAVAILABLE naming the failure and the fix), says so in status, and uses the wall once bubblewrap works again', async () => {
    const a = await fx.start({ wrap: brokenBwrap(), env: { LOWCLOUD_WALL_RETRY_MS: '500' } });
    const c = await fx.connect(a);
    const spec = await uploadSpec(c, 'walled', guest('sleeper'), { args: ['60'] });
    const err = await c.start(spec).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LowcloudError);
    expect((err as LowcloudError).code).toBe('GRANT_UNAVAILABLE');
    expect((err as LowcloudError).message).toMatch(/grants\.isolation: the kernel wall cannot be built here \(bubblewrap could not build the wall here: bwrap: setting up uid map: Permission denied\); the guest was not started\. Fix: install bubblewrap .*--allow-unwalled/);
    let st = await c.status();
    expect(st.capabilities.wall).toBeNull();
    expect(st.capabilities.unavailable.wall).toMatch(/guests are refused \(GRANT_UNAVAILABLE\).*--allow-unwalled/);
    expect(st.processes.find((p) => p.name === 'walled')?.pid ?? null).toBeNull();
    // Repaired under the running agent: the next probe (after LOWCLOUD_WALL_RETRY_MS) finds the wall.
    const umount = spawnSync('/usr/bin/nsenter', ['-t', String(a.pid), '-m', '--', '/bin/umount', bwrap]);
    expect(umount.status, umount.stderr.toString()).toBe(0);
    await new Promise((r) => setTimeout(r, 600));
    st = await c.status();
    expect(st.capabilities.wall).toBe('root');
    expect(st.capabilities.unavailable.wall).toBeUndefined();
    // The refused start changed nothing: the same call now starts it, inside the wall.
    await c.start(spec);
    await waitFor(async () => (await c.status()).processes.find((p) => p.name === 'walled')?.pid != null, 10_000, 'the guest to run');
    st = await c.status();
    expect(st.processes.find((p) => p.name === 'walled')?.enforcement?.isolation[0]?.level).toBe('kernel');
    await c.stop('walled', 2000);
  });

  it('with --allow-unwalled runs the guest without the wall, and status and its report say so', async () => {
    const a = await fx.start({ wrap: brokenBwrap(), args: ['--allow-unwalled'], stateDir: path.join(fx.dir, 'state-unwalled') });
    const c = await fx.connect(a);
    await c.start(await uploadSpec(c, 'unwalled', guest('sleeper'), { args: ['60'] }));
    const st = await c.status();
    expect(st.capabilities.unavailable.wall).toMatch(/guests run WITHOUT the wall \(--allow-unwalled\)/);
    const p = st.processes.find((x) => x.name === 'unwalled');
    expect(p?.pid).toBeGreaterThan(0);
    expect(p?.enforcement?.isolation.map((e) => e.level)).toEqual(['runtime', 'advisory']);
    expect(p?.enforcement?.isolation[1]?.mechanism).toMatch(/no kernel wall around the guest host/);
    await c.stop('unwalled', 2000);
  });
});

describe('lowcloud up where the wall cannot be built (LOWCLOUD_NO_WALL=1 in the agents up starts)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-up-unwalled-'));
  afterAll(() => {
    // Whatever a failed assertion left: the agents up started, by the pids it recorded.
    const agents = path.join(dir, '.lowcloud', 'agents');
    for (const m of existsSync(agents) ? readdirSync(agents) : []) {
      try {
        const pid = (JSON.parse(readFileSync(path.join(agents, m, 'agent.json'), 'utf8')) as { pid: number }).pid;
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        // no record
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses the process naming `lowcloud up --allow-unwalled`; with it the agents up starts run it without the wall, and status says so', { timeout: 120_000 }, async () => {
    mkdirSync(path.join(dir, 'bin'));
    cpSync(guest('sleeper'), path.join(dir, 'bin/sleeper.wasm'));
    writeFileSync(
      path.join(dir, 'infra.yaml'),
      'version: 1\nmachines:\n  here:\n    agent: local\n    capacity: { cpu: 1, memory: 256MiB }\nprocesses:\n  p:\n    machine: here\n    binary: bin/sleeper.wasm\n    grants: { memory: 32MiB }\n',
    );
    const env = { LOWCLOUD_NO_WALL: '1' };
    const cli = (args: string[]) => runCli(args, { cwd: dir, env, timeoutMs: 90_000 });
    const refused = await cli(['up', 'infra.yaml']);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toMatch(/start p on here: grants.isolation: the kernel wall cannot be built here[\s\S]*lowcloud up --allow-unwalled/);
    // An agent already running keeps its policy: up says so.
    const again = await cli(['up', 'infra.yaml', '--allow-unwalled']);
    expect(again.stderr).toMatch(/local agent for here already runs \(pid \d+\): --allow-unwalled applies to agents up starts \(lowcloud down first\)/);
    expect((await cli(['down', 'infra.yaml'])).code).toBe(0);
    const up = await cli(['up', 'infra.yaml', '--allow-unwalled']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toMatch(/started local agent for here \(pid \d+\) on \S+ \(--allow-unwalled\)/);
    const st = await cli(['status', 'infra.yaml', '--json']);
    expect(st.code, st.stderr).toBe(0);
    // Running, and walled at the runtime layer only (a walled guest says kernel).
    const p = (JSON.parse(st.stdout) as { processes: { process: string; state: string; enforcement: { isolation: string } }[] }).processes[0];
    expect(p).toMatchObject({ process: 'p', state: 'running', enforcement: { isolation: 'runtime' } });
    expect((await cli(['down', 'infra.yaml'])).code).toBe(0);
  });
});
