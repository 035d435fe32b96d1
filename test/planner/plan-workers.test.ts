import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

  it('flags around the files as bin/lowcloud.js reads them to start the workers first: --out and its value, --no-color, --parallelism', async () => {
    const runs = [
      ['plan', '--out', 'out-a.json', 'base.yaml', '--no-color', 'target.yaml'],
      ['plan', 'base.yaml', '--parallelism', '4', 'target.yaml', '--out', 'out-b.json', '--json'],
    ];
    for (const args of runs) {
      const r = await bothWays(args, dir);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('kv-b');
    }
    expect(readFileSync(path.join(dir, 'out-a.json'), 'utf8')).toBe(readFileSync(path.join(dir, 'out-b.json'), 'utf8'));
    // Three files: the early start stands aside and the command says what is wrong, as always.
    const three = await bothWays(['plan', 'base.yaml', 'target.yaml', 'base.yaml'], dir);
    expect([three.code, three.stderr]).toEqual([1, 'error: give BASE.yaml and TARGET.yaml, or --base <git-rev> and one file (got 3 file(s))\n']);
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
