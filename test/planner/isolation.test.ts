import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePlanDocument } from '@lowcloud/planner';
import { repoRoot, runCli } from '../helpers/cli.js';

/** `isolation: process | shared` through validate and plan, with the built CLI. */
let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-isolation-'));
  cpSync(path.join(repoRoot, 'test/fixtures/infra/bin'), path.join(dir, 'bin'), { recursive: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, isolation: string | null) => {
  const p = path.join(dir, name);
  writeFileSync(p, `version: 1\nmachines:\n  m1: { agent: local }\nprocesses:\n  a:\n    machine: m1\n    binary: bin/kv.wasm\n${isolation === null ? '' : `    isolation: ${isolation}\n`}  b: { machine: m1, binary: bin/kv.wasm }\n`);
  return p;
};

describe('isolation in the infra file', () => {
  it('validate names a value that is not one, with its line and column, and the values there are', async () => {
    const r = await runCli(['validate', file('bad.yaml', 'container')], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(`${dir}/bad.yaml:8:16: processes.a.isolation: "container" is not allowed (use one of: process, shared)`);
  });

  it('process and shared both validate; process is the default and the same spec as none', async () => {
    expect((await runCli(['validate', file('shared.yaml', 'shared')], { cwd: dir })).code).toBe(0);
    const same = await runCli(['plan', '--json', file('none.yaml', null), file('process.yaml', 'process')], { cwd: dir });
    expect(parsePlanDocument(JSON.parse(same.stdout)).changes).toEqual([]);
  });

  it('a change of isolation is a replace (stop, start), the plan saying isolation changed; the others are untouched', async () => {
    const r = await runCli(['plan', file('process.yaml', 'process'), file('shared.yaml', 'shared')], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('  - stop           a  replace: isolation changed');
    expect(r.stdout).toContain('  + start          a  replace: isolation changed\n      isolation: process -> shared');
    const doc = parsePlanDocument(JSON.parse((await runCli(['plan', '--json', file('process.yaml', 'process'), file('shared.yaml', 'shared')], { cwd: dir })).stdout));
    expect(doc.changes).toEqual([expect.objectContaining({ process: 'a', actions: ['stop', 'start'], reason: 'replaced', paths: ['isolation'], fields: [{ path: 'isolation', from: 'process', to: 'shared' }] })]);
    expect(doc.calls.find((c) => c.call === 'start')).toMatchObject({ process: 'a', spec: { isolation: 'shared' } });
  });
});
