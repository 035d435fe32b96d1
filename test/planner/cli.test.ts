import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePlanDocument } from '@lowcloud/planner';
import { repoRoot, runCli } from '../helpers/cli.js';
import { tempGitRepo } from '../helpers/git.js';

const fixtures = path.join(repoRoot, 'test/fixtures/infra');

describe('lowcloud plan on two files', () => {
  it('prints the summary, then each call by machine with the reason and the fields that forced it', async () => {
    const r = await runCli(['plan', 'test/fixtures/infra/base.yaml', 'test/fixtures/infra/target.yaml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        'Plan: 1 to start, 1 to stop, 2 to restart, 1 to move.',
        '',
        'machine eu-1 (ws://127.0.0.1:7443)',
        '  - stop           kv-b        moved to us-1',
        '  - stop           lb          replace: grants.memory changed',
        '  ~ replace-config kv-a        config changed (/etc/kv.toml); restarts once',
        '      config./etc/kv.toml: sha256:a9b7acf78452 -> sha256:d0f0568e16de',
        '  + start          kv-c        new process',
        '  + start          lb          replace: grants.memory changed',
        '      grants.memory: 32MiB -> 64MiB',
        '',
        'machine us-1 (local)',
        '  - stop           old-worker  removed from the file',
        '  + start          kv-b        moved from eu-1',
        '      machine: eu-1 -> us-1',
        '',
        '7 call(s) in execution order; planner: minimal. Config contents are never shown, only digests.',
        '',
      ].join('\n'),
    );
    expect(r.stdout).not.toContain('cache = 64');
  });

  it('--json prints a versioned document with calls in execution order', async () => {
    const r = await runCli(['plan', '--json', 'test/fixtures/infra/base.yaml', 'test/fixtures/infra/target.yaml']);
    expect(r.code).toBe(0);
    const doc = parsePlanDocument(JSON.parse(r.stdout));
    expect(doc.format_version).toBe('1');
    expect(doc.summary).toEqual({ start: 3, stop: 3, replace_config: 1 });
    expect(doc.calls.map((c) => `${c.call} ${c.machine}/${c.process}`)).toEqual([
      'stop eu-1/kv-b',
      'stop eu-1/lb',
      'stop us-1/old-worker',
      'replace-config eu-1/kv-a',
      'start eu-1/kv-c',
      'start eu-1/lb',
      'start us-1/kv-b',
    ]);
    expect(doc.changes.find((c) => c.process === 'lb')).toMatchObject({ actions: ['stop', 'start'], reason: 'replaced', paths: ['grants.memory'] });
    expect(doc.changes.find((c) => c.process === 'kv-a')).toMatchObject({ actions: ['replace-config'], reason: 'config-changed', paths: ['config./etc/kv.toml'] });
    expect(doc.changes.find((c) => c.process === 'kv-b')).toMatchObject({ actions: ['stop', 'start'], reason: 'moved', paths: ['machine'] });
    expect(JSON.stringify(doc)).not.toContain('cache = 64');
  });

  it('--planner blue-green starts a moved process before stopping the old one', async () => {
    const r = await runCli(['plan', '--json', '--planner', 'blue-green', 'test/fixtures/infra/base.yaml', 'test/fixtures/infra/target.yaml']);
    const doc = parsePlanDocument(JSON.parse(r.stdout));
    const order = doc.calls.map((c) => `${c.call} ${c.machine}/${c.process}`);
    expect(order.indexOf('start us-1/kv-b')).toBeLessThan(order.indexOf('stop eu-1/kv-b'));
    expect(doc.changes.find((c) => c.process === 'lb')?.note).toContain('stop then start');
  });

  it('--detailed-exitcode: 2 with changes, 0 without', async () => {
    const changed = await runCli(['plan', '--detailed-exitcode', 'test/fixtures/infra/base.yaml', 'test/fixtures/infra/target.yaml']);
    expect(changed.code).toBe(2);
    const same = await runCli(['plan', '--detailed-exitcode', 'test/fixtures/infra/base.yaml', 'test/fixtures/infra/base.yaml']);
    expect(same.code).toBe(0);
    expect(same.stdout).toBe('No changes. The target matches the base.\n');
    const plain = await runCli(['plan', 'test/fixtures/infra/base.yaml', 'test/fixtures/infra/target.yaml']);
    expect(plain.code).toBe(0);
  });

  it('--out writes the plan document, recording both versions', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-out-'));
    try {
      const out = path.join(dir, 'plan.json');
      const r = await runCli(['plan', '--out', out, 'test/fixtures/infra/base.yaml', 'test/fixtures/infra/target.yaml']);
      expect(r.code).toBe(0);
      const doc = parsePlanDocument(JSON.parse(readFileSync(out, 'utf8')));
      expect(doc.base.label).toBe('test/fixtures/infra/base.yaml');
      expect(doc.base.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(doc.target.digest).not.toBe(doc.base.digest);
      expect(Object.values(doc.files).sort()).toEqual(['bin/kv-v2.wasm', 'bin/kv.wasm', 'bin/lb.wasm', 'config/kv-a-v2.toml', 'config/kv-b.toml']);
      // A plan of another major format version is refused by apply before it contacts anyone.
      writeFileSync(out, JSON.stringify({ ...JSON.parse(readFileSync(out, 'utf8')), format_version: '2.0' }));
      const refused = await runCli(['apply', out]);
      expect(refused).toMatchObject({ code: 1, stdout: '' });
      expect(refused.stderr).toContain(`${out}: plan format_version 2.0 is not supported; this lowcloud reads version 1.x (re-create the plan with this lowcloud)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a connect list means the same in any order and spelling', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-connect-'));
  beforeAll(() => cpSync(fixtures, dir, { recursive: true }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, connect: string) => {
    writeFileSync(path.join(dir, name), `version: 1\nmachines:\n  m1: { agent: local }\nprocesses:\n  a: { machine: m1, binary: bin/kv.wasm, grants: { network: { connect: ${connect} } } }\n`);
    return name;
  };

  it('reordered, repeated or written another way, the targets plan as no change; a new target replaces the process', async () => {
    const base = file('base.yaml', '[db.internal:5432, "10.0.0.6:5432", "10.0.0.0/8:6379", "[fd00::6]:80"]');
    const reordered = file('reordered.yaml', '["[FD00:0::6]:80", "10.1.2.3/8:6379", DB.internal:5432, "10.0.0.6/32:5432", "10.0.0.6:5432"]');
    const same = await runCli(['plan', '--detailed-exitcode', base, reordered], { cwd: dir });
    expect(same).toEqual({ code: 0, stdout: 'No changes. The target matches the base.\n', stderr: '' });
    const added = file('added.yaml', '[db.internal:5432, "10.0.0.6:5432", "10.0.0.0/8:6379", "[fd00::6]:80", "10.0.0.7:5432"]');
    const changed = await runCli(['plan', '--json', '--detailed-exitcode', base, added], { cwd: dir });
    expect(changed.code).toBe(2);
    const doc = parsePlanDocument(JSON.parse(changed.stdout));
    expect(doc.changes).toMatchObject([{ process: 'a', reason: 'replaced', paths: ['grants.network.connect'] }]);
    // The plan carries the canonical list: sorted, each target once, in its one spelling.
    expect(doc.calls.find((c) => c.call === 'start')?.spec?.grants.network.connect).toEqual(['10.0.0.0/8:6379', '10.0.0.6:5432', '10.0.0.7:5432', '[fd00::6]:80', 'db.internal:5432']);
  });
});

describe('lowcloud plan --base <git-rev>', () => {
  const repo = tempGitRepo();
  let first = '';
  beforeAll(() => {
    cpSync(path.join(fixtures, 'bin'), path.join(repo.dir, 'infra/bin'), { recursive: true });
    cpSync(path.join(fixtures, 'config'), path.join(repo.dir, 'infra/config'), { recursive: true });
    cpSync(path.join(fixtures, 'base.yaml'), path.join(repo.dir, 'infra/infra.yaml'));
    first = repo.commit('base');
    // Same file names, new contents: identity must come from the bytes, not the paths.
    writeFileSync(path.join(repo.dir, 'infra/config/kv-b.toml'), 'port = 7002\nreplicas = 2\n');
    repo.commit('change kv-b config');
  });
  afterAll(() => repo.remove());

  it('reads the old file and the files it references from git, the new ones from the working tree', async () => {
    const r = await runCli(['plan', '--base', 'HEAD~1', 'infra/infra.yaml'], { cwd: repo.dir });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')[0]).toBe('Plan: 0 to start, 0 to stop, 1 to restart.');
    expect(r.stdout).toContain('~ replace-config kv-b  config changed (/etc/kv.toml); restarts once');
    const same = await runCli(['plan', '--base', 'HEAD', '--detailed-exitcode', 'infra/infra.yaml'], { cwd: repo.dir });
    expect(same.code).toBe(0);
    const byId = await runCli(['plan', '--base', first, 'infra.yaml', '--detailed-exitcode'], { cwd: path.join(repo.dir, 'infra') });
    expect(byId.code).toBe(2);
  });

  it('names a revision that does not exist (exit 1, also with --detailed-exitcode, where 2 means changes)', async () => {
    const detailed = await runCli(['plan', '--detailed-exitcode', '--base', 'no-such-branch', 'infra/infra.yaml'], { cwd: repo.dir });
    expect(detailed.code).toBe(1);
    const r = await runCli(['plan', '--base', 'no-such-branch', 'infra/infra.yaml'], { cwd: repo.dir });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`error: --base no-such-branch: no such revision in ${repo.dir}\n`);
  });
});

describe('bad input: every problem named with file, line, column, field and fix; nothing else happens', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-bad-'));
  beforeAll(() => cpSync(fixtures, dir, { recursive: true }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const validate = async (yaml: string) => {
    writeFileSync(path.join(dir, 'infra.yaml'), yaml);
    return runCli(['validate', 'infra.yaml'], { cwd: dir });
  };
  const machine = 'version: 1\nmachines:\n  m1: { agent: local, capacity: { memory: 100MiB } }\n';

  it.each([
    ['malformed YAML', `${machine}processes:\n  a: { machine: m1, binary: [unclosed\n`, 'infra.yaml:6:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] (check indentation and quoting near here)'],
    ['an unknown key', `${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm, grant: {} }\n`, 'infra.yaml:5:42: processes.a.grant: unknown key "grant" (did you mean "grants"?)'],
    ['a duplicate key', `${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm }\n  a: { machine: m1, binary: bin/lb.wasm }\n`, 'infra.yaml:6:3: processes.a: duplicate key "a" (first at line 5, column 3) (each key may appear once in a mapping; merge the two entries)'],
    ['an unknown machine', `${machine}processes:\n  a: { machine: m2, binary: bin/kv.wasm }\n`, 'infra.yaml:5:17: processes.a.machine: unknown machine "m2" (did you mean "m1"?)'],
    ['grants over capacity', `${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm, grants: { memory: 64MiB } }\n  b: { machine: m1, binary: bin/lb.wasm, grants: { memory: 64MiB } }\n`, 'infra.yaml:3:43: machines.m1.capacity.memory: grants over capacity: processes on m1 are granted 128MiB of memory but the machine has 100MiB (a 64MiB, b 64MiB) (lower the grants, raise capacity.memory, or move a process to another machine)'],
    ['a size with an unknown unit', `${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm, grants: { memory: 64XB } }\n`, 'infra.yaml:5:60: processes.a.grants.memory: "64XB" is not a size (use a number with B, KB, MB, GB, KiB, MiB or GiB, e.g. 64MiB)'],
    ['a size without unit', `${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm, grants: { disk: 64 } }\n`, 'infra.yaml:5:58: processes.a.grants.disk: 64 has no unit (write 64MiB, 64KiB or 64B)'],
    ['a missing binary', `${machine}processes:\n  a: { machine: m1, binary: bin/nope.wasm }\n`, 'infra.yaml:5:29: processes.a.binary: binary bin/nope.wasm not found in the working tree (check the path; it is relative to the infra file)'],
    ['a binary that is not WebAssembly', `${machine}processes:\n  a: { machine: m1, binary: bin/not-wasm.wasm }\n`, 'infra.yaml:5:29: processes.a.binary: bin/not-wasm.wasm is not a WebAssembly binary (no \\0asm header) (point binary at a .wasm module or component)'],
    ['an unknown version', 'version: 2\nmachines: {}\n', 'infra.yaml:1:10: version: unsupported version 2 (this lowcloud reads version: 1)'],
    ['a remote agent without a pinned key', 'version: 1\nmachines:\n  m1: { agent: "wss://10.0.0.5:7443" }\n', 'infra.yaml:3:16: machines.m1.agent: machine m1 has a remote agent but no key (add key: ed25519:... as printed by `lowcloud agent` on that machine (pinned like ssh known_hosts))'],
    ['plain ws:// to an agent off loopback', 'version: 1\nmachines:\n  m1: { agent: "ws://10.0.0.5:7443", key: "ed25519:6inJdnNMIdyh6ZAkgOb5Od6QwfkmxSeEtA7LmmewhV4=" }\n', 'infra.yaml:3:16: machines.m1.agent: plain ws:// is only allowed on loopback (ws://10.0.0.5:7443) (use wss:// so configs and secrets are encrypted in transit)'],
    ['a key that is not 32 bytes', 'version: 1\nmachines:\n  m1: { agent: "wss://10.0.0.5:7443", key: "ed25519:AAAA" }\n', 'infra.yaml:3:44: machines.m1.key: "ed25519:AAAA" is not an agent key (use ed25519: followed by the base64 of the raw 32-byte public key, as printed by `lowcloud agent`)'],
    ['a connect target that is not one', `${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm, grants: { network: { connect: [db.internal:5432, 10.0.0.300:5432] } } }\n`, 'infra.yaml:5:91: processes.a.grants.network.connect.1: "10.0.0.300:5432" has "10.0.0.300", which is not an IPv4 address (use ip:port (10.0.0.6:5432), [ipv6]:port ([fd00::6]:5432), cidr:port (10.0.0.0/8:5432) or host:port (db.internal:5432))'],
    ['a listen port granted twice on one machine', `${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm, grants: { network: { listen: [80] } } }\n  b: { machine: m1, binary: bin/kv.wasm, grants: { network: { listen: [80] } } }\n`, 'infra.yaml:6:71: processes.b.grants.network.listen: port 80 is already granted to a on machine m1 (give each process on a machine its own listen ports)'],
  ])('%s', async (_what, yaml, expected) => {
    const r = await validate(yaml);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    if (typeof expected === 'string') expect(r.stderr.split('\n')[0]).toBe(expected);
    else expect(r.stderr).toMatch(expected);
    expect(r.stderr).toContain('nothing was changed.');
  });

  it('prints all errors at once', async () => {
    const r = await validate(`${machine}processes:\n  a: { machine: m1, binary: bin/kv.wasm, grants: { memory: 64XB, cpu: fast }, restrat: always }\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('processes.a.grants.memory: "64XB" is not a size');
    expect(r.stderr).toContain('processes.a.grants.cpu: must be a number, got string "fast"');
    expect(r.stderr).toContain('processes.a.restrat: unknown key "restrat" (did you mean "restart"?)');
    expect(r.stderr).toContain('3 error(s); nothing was changed.');
  });

  it('says ok with counts for a valid file', async () => {
    const r = await runCli(['validate', 'base.yaml'], { cwd: dir });
    expect(r).toEqual({ code: 0, stdout: 'base.yaml: ok (2 machine(s), 4 process(es))\n', stderr: '' });
  });
});
