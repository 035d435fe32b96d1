import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LowcloudError, specDigest } from '@lowcloud/api';
import { parsePlanDocument } from '@lowcloud/planner';
import { useAgentFixture, uploadSpec } from '../helpers/agent.js';
import { runCli } from '../helpers/cli.js';
import { alive, guest, waitFor } from '../helpers/guests.js';

/**
 * The per-process opt-in to run unwalled (issue 17): where the wall cannot be built
 * (`LOWCLOUD_NO_WALL=1` in the agent's environment), an agent without --allow-unwalled refuses
 * every guest but one whose spec says `allowUnwalled: true`; that one runs without the wall, and
 * its report, `status` and the plan say so.
 */
const fx = useAgentFixture();
const NO_WALL = { LOWCLOUD_NO_WALL: '1' };

describe('allowUnwalled on a process, with a real agent that cannot build the wall', () => {
  it('refuses the guest without it; runs the one with it, alone, and its report says by its own opt-in', async () => {
    const a = await fx.start({ env: NO_WALL });
    const c = await fx.connect(a);
    const plain = await uploadSpec(c, 'plain', guest('sleeper'), { args: ['60'] });
    const err = await c.start(plain).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LowcloudError);
    expect((err as LowcloudError).code).toBe('GRANT_UNAVAILABLE');
    // The fix names the per-process opt-in too.
    expect((err as LowcloudError).message).toMatch(/the kernel wall cannot be built here .*allowUnwalled: true on it in the infra file/);

    const opted = await uploadSpec(c, 'opted', guest('sleeper'), { args: ['60'], allowUnwalled: true });
    await c.start(opted);
    await waitFor(async () => (await c.status()).processes.find((p) => p.name === 'opted')?.pid != null, 10_000, 'the opted-in guest to run');
    const st = await c.status();
    expect(st.capabilities.unavailable.wall).toMatch(/guests are refused \(GRANT_UNAVAILABLE\) but those whose process opts in \(allowUnwalled in the infra file\)/);
    const p = st.processes.find((x) => x.name === 'opted');
    expect(p?.spec.allowUnwalled).toBe(true);
    expect(p?.specDigest).toBe(specDigest(opted));
    expect(p?.enforcement?.isolation.map((e) => e.level)).toEqual(['runtime', 'advisory']);
    expect(p?.enforcement?.isolation[1]?.mechanism).toMatch(/no kernel wall around the guest host: .*it runs unwalled by its own opt-in, allowUnwalled in the infra file/);
    // Only that guest: the other is still refused while it runs.
    expect(
      await c.start(plain).then(
        () => 'started',
        (e: unknown) => (e as LowcloudError).code,
      ),
    ).toBe('GRANT_UNAVAILABLE');
    expect(st.processes.find((x) => x.name === 'plain')?.pid ?? null).toBeNull();
    await c.stop('opted', 2000);
  });

  it('the protocol takes allowUnwalled only as true (one spelling, one digest)', async () => {
    const a = await fx.start({ env: NO_WALL, stateDir: path.join(fx.dir, 'state-false') });
    const c = await fx.connect(a);
    const spec = await uploadSpec(c, 'falsy', guest('sleeper'), { args: ['60'] });
    const err = await c.start({ ...spec, allowUnwalled: false as unknown as true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect((err as LowcloudError).code).toBe('BAD_MESSAGE');
    expect((err as LowcloudError).message).toMatch(/allowUnwalled/);
  });
});

describe('allowUnwalled through lowcloud up, plan and status (agents up starts with LOWCLOUD_NO_WALL=1, no --allow-unwalled)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-opt-unwalled-'));
  afterAll(() => {
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

  const infra = (name: string, optIn: string | null) => {
    writeFileSync(
      path.join(dir, name),
      `version: 1\nmachines:\n  here:\n    agent: local\n    capacity: { cpu: 1, memory: 256MiB }\nprocesses:\n  p:\n    machine: here\n    binary: bin/sleeper.wasm\n    args: ["600"]\n    grants: { memory: 32MiB }\n${optIn === null ? '' : `    allowUnwalled: ${optIn}\n`}`,
    );
    return name;
  };

  it('validate names a value that is not a boolean with its line and column; false is the same spec as none', async () => {
    mkdirSync(path.join(dir, 'bin'), { recursive: true });
    cpSync(guest('sleeper'), path.join(dir, 'bin/sleeper.wasm'));
    const bad = await runCli(['validate', infra('bad.yaml', '"yes"')], { cwd: dir });
    expect(bad.code).toBe(1);
    expect(bad.stderr.split('\n')[0]).toBe('bad.yaml:12:20: processes.p.allowUnwalled: must be a boolean, got string "yes"');
    const same = await runCli(['plan', '--json', infra('none.yaml', null), infra('false.yaml', 'false')], { cwd: dir });
    expect(same.code, same.stderr).toBe(0);
    expect(parsePlanDocument(JSON.parse(same.stdout)).changes).toEqual([]);
  });

  it('refused without it; with it up runs the process, the plan saying it may run unwalled and status that it does by its own opt-in', { timeout: 120_000 }, async () => {
    const cli = (args: string[]) => runCli(args, { cwd: dir, env: NO_WALL, timeoutMs: 90_000 });
    const refused = await cli(['up', infra('infra.yaml', null)]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toMatch(/start p on here: grants.isolation: the kernel wall cannot be built here[\s\S]*allowUnwalled: true on it in the infra file/);

    // The plan for turning it on, file against file: a replace, saying what it means.
    const plan = await cli(['plan', infra('none.yaml', null), infra('opted.yaml', 'true')]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('  - stop           p  replace: allowUnwalled changed (allowUnwalled: runs WITHOUT the kernel wall where the agent cannot build it)');
    expect(plan.stdout).toContain('  + start          p  replace: allowUnwalled changed (allowUnwalled: runs WITHOUT the kernel wall where the agent cannot build it)\n      allowUnwalled: false -> true');
    const doc = parsePlanDocument(JSON.parse((await cli(['plan', '--json', infra('none.yaml', null), infra('opted.yaml', 'true')])).stdout));
    expect(doc.changes).toEqual([expect.objectContaining({ process: 'p', actions: ['stop', 'start'], reason: 'replaced', paths: ['allowUnwalled'], because: ['allowUnwalled: runs WITHOUT the kernel wall where the agent cannot build it'] })]);
    expect(doc.calls.find((x) => x.call === 'start')).toMatchObject({ process: 'p', spec: { allowUnwalled: true } });
    // And for a process new to the fleet (the base has none): the plan says so on its start.
    const fresh = await cli(['plan', '--live', infra('infra.yaml', 'true')]);
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(fresh.stdout).toMatch(/\+ start\s+p\s+new process \(allowUnwalled: runs WITHOUT the kernel wall where the agent cannot build it\)/);

    // The same agent (still refusing other guests): up now runs p without the wall.
    const up = await cli(['up', 'infra.yaml']);
    expect(up.code, up.stdout + up.stderr).toBe(0);
    const st = await cli(['status', 'infra.yaml', '--json']);
    expect(st.code, st.stderr).toBe(0);
    const row = (JSON.parse(st.stdout) as { processes: Record<string, unknown>[] }).processes[0];
    expect(row).toMatchObject({ process: 'p', state: 'running', enforcement: { isolation: 'runtime' }, unwalled: 'allowUnwalled' });
    const text = await cli(['status', 'infra.yaml']);
    expect(text.stdout).toMatch(/ p +ok +running pid \d+.*UNWALLED by its own opt-in \(allowUnwalled\)/);
    expect((await cli(['down', 'infra.yaml'])).code).toBe(0);
  });
});
