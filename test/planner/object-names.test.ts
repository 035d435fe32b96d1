import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempGitRepo } from '../helpers/git.js';
import { guest } from '../helpers/guests.js';

// `constructor` is a valid process and machine name, and also a property of every JavaScript
// object: records keyed by names must not find Object.prototype's where a name is absent (the
// planner's diff, the agent's desired state and uid table crashed on it).

const repo = tempGitRepo();
afterAll(async () => {
  await runCli(['down', 'one.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
  repo.remove();
});

const infra = (names: string[]) =>
  `version: 1\nmachines:\n  constructor: { agent: local, capacity: { cpu: 1, memory: 512MiB } }\nprocesses:\n${names.map((n) => `  ${n}:\n    machine: constructor\n    binary: bin/sleeper.wasm\n    grants: { memory: 16MiB }\n`).join('')}`;

describe('a process and a machine named constructor', () => {
  it('plans both ways, starts, reports and stops like any other name', async () => {
    mkdirSync(path.join(repo.dir, 'bin'));
    cpSync(guest('sleeper'), path.join(repo.dir, 'bin/sleeper.wasm'));
    writeFileSync(path.join(repo.dir, 'one.yaml'), infra(['a']));
    writeFileSync(path.join(repo.dir, 'two.yaml'), infra(['a', 'constructor']));
    const grow = await runCli(['plan', 'one.yaml', 'two.yaml'], { cwd: repo.dir });
    expect(grow.code, grow.stderr).toBe(0);
    expect(grow.stdout).toMatch(/machine constructor \(local\)\n {2}\+ start +constructor +new process/);
    const shrink = await runCli(['plan', 'two.yaml', 'one.yaml'], { cwd: repo.dir });
    expect(shrink.code, shrink.stderr).toBe(0);
    expect(shrink.stdout).toMatch(/- stop +constructor +removed from the file/);
    const workers = await runCli(['plan', 'one.yaml', 'two.yaml'], { cwd: repo.dir, env: { LOWCLOUD_PLAN_WORKERS: 'on' } });
    expect(workers.stdout).toBe(grow.stdout);

    const up = await runCli(['up', 'two.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(up.code, up.stderr).toBe(0);
    const status = await runCli(['status', 'two.yaml', '--json'], { cwd: repo.dir });
    const rows = (JSON.parse(status.stdout) as { processes: { process: string; machine: string; drift: string; state: string }[] }).processes;
    expect(rows.map((r) => `${r.process}@${r.machine}:${r.drift}:${r.state}`).sort()).toEqual(['a@constructor:ok:running', 'constructor@constructor:ok:running']);

    const down = await runCli(['up', 'one.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/- stop +constructor/);
    expect((await runCli(['status', 'one.yaml'], { cwd: repo.dir })).code).toBe(0);
  });
});
