import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempGitRepo } from '../helpers/git.js';
import { guest } from '../helpers/guests.js';

// `up` starts the local agents from the file's parse, while its binaries and config files are read
// and hashed. A file that parses but does not load must still change nothing.

const repo = tempGitRepo();
afterAll(async () => {
  // two.yaml names both machines: its `down` stops both agents.
  await runCli(['down', existsSync(path.join(repo.dir, 'two.yaml')) ? 'two.yaml' : 'good.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
  repo.remove();
});

/**
 * Pids of the agents `up` started in the repository: processes whose command line names it and
 * `agent`. A child an agent has forked but not yet exec'd (a guest host's launcher, for the moment
 * between fork and exec) has the agent's command line too: one whose parent is such an agent is not
 * counted (CI once counted three agents for two).
 */
function agentsOfRepo(): number[] {
  const found = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (!cmd.includes(repo.dir) || !cmd.includes('\0agent\0')) continue;
      // stat: "pid (comm) state ppid ...": the comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      found.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  return [...found].filter(([, ppid]) => !found.has(ppid)).map(([pid]) => pid);
}

const infra = (binary: string) =>
  `version: 1\nmachines:\n  here: { agent: local, capacity: { cpu: 1, memory: 256MiB } }\nprocesses:\n  p:\n    machine: here\n    binary: ${binary}\n    grants: { memory: 16MiB }\n`;

describe('lowcloud up: local agents and a file that does not load', () => {
  it('a missing binary: the error names it, and no agent and no .lowcloud/ are left', async () => {
    writeFileSync(path.join(repo.dir, 'bad.yaml'), infra('bin/missing.wasm'));
    const r = await runCli(['up', 'bad.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('bin/missing.wasm');
    expect(r.stderr).not.toContain('started local agent');
    expect(existsSync(path.join(repo.dir, '.lowcloud'))).toBe(false);
    expect(agentsOfRepo()).toEqual([]);
  });

  it('an agent that already runs is left running when the file does not load', async () => {
    mkdirSync(path.join(repo.dir, 'bin'), { recursive: true });
    cpSync(guest('sleeper'), path.join(repo.dir, 'bin/sleeper.wasm'));
    writeFileSync(path.join(repo.dir, 'good.yaml'), infra('bin/sleeper.wasm'));
    const up = await runCli(['up', 'good.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr.match(/started local agent for here/g)).toHaveLength(1);
    const running = agentsOfRepo();
    expect(running).toHaveLength(1);

    writeFileSync(path.join(repo.dir, 'bad.yaml'), infra('bin/missing.wasm'));
    const r = await runCli(['up', 'bad.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('bin/missing.wasm');
    expect(agentsOfRepo()).toEqual(running);
    expect(existsSync(path.join(repo.dir, '.lowcloud/agents/here/agent.json'))).toBe(true);

    // And `up` again finds it, starting none.
    const again = await runCli(['up', 'good.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toContain('started local agent');
    expect(agentsOfRepo()).toEqual(running);

    // A machine new in the file gets its agent too: with one running, `up` does not parse the file
    // a second time to start agents early, and starts the new one after the load.
    writeFileSync(path.join(repo.dir, 'two.yaml'), infra('bin/sleeper.wasm').replace('machines:\n', 'machines:\n  there: { agent: local, capacity: { cpu: 1, memory: 256MiB } }\n'));
    const two = await runCli(['up', 'two.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(two.code, two.stderr).toBe(0);
    expect(two.stderr.match(/started local agent for \w+/g)).toEqual(['started local agent for there']);
    expect(agentsOfRepo()).toHaveLength(2);
  });

  it('an up with its agents running reaches each of them once: one connection checks it runs, reads its state and carries the calls', async () => {
    const log = readFileSync(path.join(repo.dir, '.lowcloud/agents/here/agent.log'), 'utf8');
    const metrics = /metrics on (\S+)/.exec(log)?.[1] as string;
    expect(metrics).toBeDefined();
    const hellos = async () => Number(/^lowcloud_agent_calls_total\{type="hello",result="ok"\} (\S+)$/m.exec(await (await fetch(metrics)).text())?.[1] ?? 0);
    // two.yaml and one process more on `here`: a start goes through the apply.
    writeFileSync(path.join(repo.dir, 'three.yaml'), readFileSync(path.join(repo.dir, 'two.yaml'), 'utf8') + '  q:\n    machine: here\n    binary: bin/sleeper.wasm\n    grants: { memory: 16MiB }\n');
    const before = await hellos();
    const three = await runCli(['up', 'three.yaml'], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(three.code, three.stderr).toBe(0);
    expect(three.stdout).toContain('Apply complete: 1 call(s) made');
    expect((await hellos()) - before).toBe(1);
  });
});
