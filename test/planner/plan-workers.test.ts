import { execFileSync, spawn } from 'node:child_process';
import { closeSync, cpSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, repoRoot, runCli } from '../helpers/cli.js';
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

describe('a plan document bigger than a pipe holds', () => {
  // 3,000 processes, one in seven moved: a document of ~0.5 MB.
  beforeAll(() => {
    const proc = (i: number, machine: string) => `  p${i}:\n    machine: ${machine}\n    binary: bin/kv.wasm\n    args: [--id, "${i}"]\n`;
    const file = (shift: number) => `version: 1\nmachines:\n  m1: { agent: local }\n  m2: { agent: local }\nprocesses:\n${Array.from({ length: 3000 }, (_, i) => proc(i, (i + shift) % 7 === 0 ? 'm2' : 'm1')).join('')}`;
    writeFileSync(path.join(dir, 'big-a.yaml'), file(0));
    writeFileSync(path.join(dir, 'big-b.yaml'), file(1));
  });

  it('reaches a reader that is slow to read it whole, and the same as --out writes', async () => {
    // bin/lowcloud.js exits as soon as `plan` is done: not before a pipe has taken the document.
    const child = spawn(process.execPath, [cliPath, 'plan', '--json', 'big-a.yaml', 'big-b.yaml', '--out', 'big.json'], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
    const out = child.stdout;
    out.pause();
    // The command has written what the pipe holds (64 KiB) and waits on it before anything is read.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const chunks: Buffer[] = [];
    out.on('data', (d: Buffer) => chunks.push(d));
    out.resume();
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    const text = Buffer.concat(chunks).toString('utf8');
    expect(code).toBe(0);
    expect(text.length).toBeGreaterThan(256 * 1024);
    expect(text).toBe(`${readFileSync(path.join(dir, 'big.json'), 'utf8')}`);
    expect((JSON.parse(text) as { summary: { start: number } }).summary.start).toBeGreaterThan(0);
  });

  it('ends quietly when its reader stops early (`| head`), with no stack trace', async () => {
    const child = spawn(process.execPath, [cliPath, 'plan', '--json', 'big-a.yaml', 'big-b.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout?.once('data', () => child.stdout?.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect([code, stderr]).toEqual([0, '']);
  });

  it.skipIf(process.getuid?.() !== 0)('on a full disk: --out keeps the plan that was there, and both ways say what failed (needs root for a tmpfs)', async () => {
    const mnt = mkdtempSync(path.join(tmpdir(), 'lowcloud-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    try {
      writeFileSync(path.join(mnt, 'plan.json'), '{"the": "plan before"}\n');
      const out = await runCli(['plan', 'big-a.yaml', 'big-b.yaml', '--out', path.join(mnt, 'plan.json')], { cwd: dir });
      expect([out.code, out.stderr]).toEqual([1, `error: cannot write the plan to ${path.join(mnt, 'plan.json')}: ENOSPC: no space left on device, write\n`]);
      expect(readdirSync(mnt)).toEqual(['plan.json']);
      expect(readFileSync(path.join(mnt, 'plan.json'), 'utf8')).toBe('{"the": "plan before"}\n');
      // stdout to a file there: the command says so and fails, it does not end as if it had written it.
      const fd = openSync(path.join(mnt, 'stdout.json'), 'w');
      try {
        const child = spawn(process.execPath, [cliPath, 'plan', '--json', 'big-a.yaml', 'big-b.yaml'], { cwd: dir, stdio: ['ignore', fd, 'pipe'] });
        let stderr = '';
        child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
        const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
        expect([code, stderr]).toEqual([1, 'error: cannot write the plan to stdout: ENOSPC: no space left on device, write\n']);
      } finally {
        closeSync(fd);
      }
    } finally {
      execFileSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });
});
