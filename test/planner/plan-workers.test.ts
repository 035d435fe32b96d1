import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot, runCli } from '../helpers/cli.js';
import { tempGitRepo } from '../helpers/git.js';

// `plan` loads big files in worker threads (packages/planner/src/load.ts); LOWCLOUD_PLAN_WORKERS
// forces either path. Both must print the same bytes: plans, errors, exit codes.
const bothWays = async (args: string[], cwd?: string) => {
  const run = (mode: string) => runCli(args, { env: { LOWCLOUD_PLAN_WORKERS: mode }, ...(cwd === undefined ? {} : { cwd }) });
  const [inThread, inWorkers] = [await run('off'), await run('on')];
  expect(inWorkers).toEqual(inThread);
  return inWorkers;
};

const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-plan-workers-'));
cpSync(path.join(repoRoot, 'test/fixtures/infra'), dir, { recursive: true });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('plan in worker threads prints what plan in one thread prints', () => {
  it('the human view, --json and both planners', async () => {
    for (const extra of [[], ['--json'], ['--json', '--planner', 'blue-green'], ['--detailed-exitcode']]) {
      const r = await bothWays(['plan', ...extra, 'base.yaml', 'target.yaml'], dir);
      expect(r.code).toBe(extra.includes('--detailed-exitcode') ? 2 : 0);
      expect(r.stdout).toContain('kv-b');
    }
    expect((await bothWays(['plan', 'base.yaml', 'base.yaml'], dir)).code).toBe(0);
  });

  it('errors: a broken base, a broken target, both broken (the base is reported), a missing file', async () => {
    writeFileSync(path.join(dir, 'dup.yaml'), 'version: 1\nmachines:\n  m1: { agent: local }\n  m1: { agent: local }\n');
    writeFileSync(path.join(dir, 'unknown.yaml'), 'version: 1\nmachines:\n  m1: { agent: local }\nprocesses:\n  a: { machine: m2, binary: bin/kv.wasm }\n');
    for (const pair of [['dup.yaml', 'target.yaml'], ['base.yaml', 'unknown.yaml'], ['unknown.yaml', 'dup.yaml'], ['base.yaml', 'missing.yaml']]) {
      const r = await bothWays(['plan', ...pair], dir);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/error/);
    }
  });

  it('--base: the base from git, the target from the working tree; a revision that does not exist', async () => {
    const repo = tempGitRepo();
    try {
      cpSync(path.join(repoRoot, 'test/fixtures/infra'), path.join(repo.dir, 'infra'), { recursive: true });
      cpSync(path.join(repo.dir, 'infra/base.yaml'), path.join(repo.dir, 'infra/infra.yaml'));
      repo.commit('base');
      cpSync(path.join(repo.dir, 'infra/target.yaml'), path.join(repo.dir, 'infra/infra.yaml'));
      expect((await bothWays(['plan', '--json', '--base', 'main', 'infra/infra.yaml'], repo.dir)).code).toBe(0);
      expect((await bothWays(['plan', '--base', 'no-such-rev', 'infra/infra.yaml'], repo.dir)).code).toBe(1);
    } finally {
      repo.remove();
    }
  });
});
