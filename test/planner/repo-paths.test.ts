import { cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError } from '@lowcloud/api';
import { loadFromGit, loadFromWorkingTree } from '@lowcloud/planner';
import { runCli } from '../helpers/cli.js';
import { tempGitRepo } from '../helpers/git.js';
import { guest } from '../helpers/guests.js';

/**
 * The same commit read from the working tree and from git (`--base`) must resolve `binary` and
 * `config` paths the same way: inside the repository after symlinks, or refused by both, naming
 * the field and its line:col.
 */
const repo = tempGitRepo();
/** The repository under test is its own git work tree inside the temporary directory, so files next to it are outside it. */
const top = path.join(repo.dir, 'work');
const root = path.join(top, 'repo');

/** An infra file with one process whose binary and config are the given paths (YAML-quoted). */
const infra = (binary: string, config: string) =>
  `version: 1\nmachines:\n  m:\n    agent: local\nprocesses:\n  p:\n    machine: m\n    binary: ${JSON.stringify(binary)}\n    config:\n      /etc/app.toml: ${JSON.stringify(config)}\n`;

const CASES: Record<string, { binary: string; config: string; refused?: { field: string; line: number; column: number; says: string } }> = {
  plain: { binary: 'bin/app.wasm', config: 'config/app.toml' },
  'symlink inside': { binary: 'bin/app.wasm', config: 'config/link-in.toml' },
  'directory symlink inside': { binary: 'linked-bin/app.wasm', config: 'config/../config/app.toml' },
  'dot-dot inside': { binary: 'bin/app.wasm', config: '../inside.txt' },
  'dot-dot out': { binary: 'bin/app.wasm', config: '../../outside.txt', refused: { field: 'processes.p.config./etc/app.toml', line: 10, column: 22, says: 'points outside the repository' } },
  'symlink out': { binary: 'bin/app.wasm', config: 'config/link-out.toml', refused: { field: 'processes.p.config./etc/app.toml', line: 10, column: 22, says: 'points outside the repository (through the symlink repo/config/link-out.toml -> ../../../ci-secret.txt)' } },
  'absolute path': { binary: '/etc/hostname', config: 'config/app.toml', refused: { field: 'processes.p.binary', line: 8, column: 13, says: 'is an absolute path' } },
  'absolute symlink': { binary: 'bin/app.wasm', config: 'config/link-abs.toml', refused: { field: 'processes.p.config./etc/app.toml', line: 10, column: 22, says: 'symlink to the absolute path' } },
};

beforeAll(() => {
  // `work/` is the git work tree; the infra files live in its subdirectory `repo/`, and the
  // secrets lie outside the repository altogether (next to its top directory).
  mkdirSync(path.join(root, 'bin'), { recursive: true });
  repo.git('-C', top, 'init', '-q', '-b', 'main');
  writeFileSync(path.join(repo.dir, 'ci-secret.txt'), 'SECRET=1\n');
  writeFileSync(path.join(repo.dir, 'outside.txt'), 'SECRET=2\n');
  mkdirSync(path.join(root, 'config'));
  cpSync(guest('sleeper'), path.join(root, 'bin/app.wasm'));
  writeFileSync(path.join(root, 'config/app.toml'), 'port = 1\n');
  symlinkSync('app.toml', path.join(root, 'config/link-in.toml'));
  symlinkSync('bin', path.join(root, 'linked-bin'));
  // From repo/config/ three levels up is the git top directory's parent: outside.
  symlinkSync('../../../ci-secret.txt', path.join(root, 'config/link-out.toml'));
  symlinkSync('/etc/hostname', path.join(root, 'config/link-abs.toml'));
  writeFileSync(path.join(top, 'inside.txt'), 'not in the infra file\'s directory, but inside the repository\n');
  for (const [name, c] of Object.entries(CASES)) writeFileSync(path.join(root, `${name.replaceAll(' ', '-')}.yaml`), infra(c.binary, c.config));
  repo.git('-C', top, 'add', '-A');
  repo.git('-C', top, 'commit', '-q', '-m', 'infra files and the files they name');
});
afterAll(() => repo.remove());

async function outcome(load: () => Promise<unknown>): Promise<unknown> {
  try {
    const r = (await load()) as { processes: Record<string, { digest: string; spec: unknown }> };
    return { ok: Object.fromEntries(Object.entries(r.processes).map(([n, p]) => [n, p.spec])) };
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    return { refused: err.diagnostics.map((d) => ({ path: d.path, line: d.line, column: d.column, message: d.message.replace(/ \(in the [^)]*\)$/, '') })) };
  }
}

describe('infra paths stay in the repository, the same way from the working tree and from git', () => {
  for (const [name, c] of Object.entries(CASES)) {
    it(`${name}: ${c.refused === undefined ? 'read' : 'refused'} by both sources alike`, async () => {
      const file = path.join(root, `${name.replaceAll(' ', '-')}.yaml`);
      const tree = await outcome(() => loadFromWorkingTree(file));
      const git = await outcome(() => loadFromGit(file, 'HEAD'));
      expect(git).toEqual(tree);
      if (c.refused === undefined) {
        expect(tree).toHaveProperty('ok.p');
        return;
      }
      const [d] = (tree as { refused: { path: string; line: number; column: number; message: string }[] }).refused;
      expect(d).toMatchObject({ path: c.refused.field, line: c.refused.line, column: c.refused.column });
      expect(d?.message).toContain(c.refused.says);
    });
  }

  it('a symlink inside the repository is followed: the config digest is of the file, in both sources', async () => {
    const file = path.join(root, 'symlink-inside.yaml');
    const plain = await loadFromWorkingTree(path.join(root, 'plain.yaml'));
    const [tree, git] = [await loadFromWorkingTree(file), await loadFromGit(file, 'HEAD')];
    expect(tree.processes.p?.spec.config).toEqual(plain.processes.p?.spec.config);
    expect(git.processes.p?.spec.config).toEqual(plain.processes.p?.spec.config);
  });

  it('plan refuses before planning: the human plan never shows a start that would upload the secret', async () => {
    const r = await runCli(['plan', 'plain.yaml', 'symlink-out.yaml'], { cwd: root });
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('start p');
    expect(r.stderr).toMatch(/symlink-out\.yaml:10:22/);
    expect(r.stderr).toContain('processes.p.config./etc/app.toml');
    const b = await runCli(['plan', '--base', 'HEAD', 'absolute-path.yaml'], { cwd: root });
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/absolute-path\.yaml(@HEAD)?:8:13/);
    expect(b.stdout).not.toContain('start p');
  });
});
