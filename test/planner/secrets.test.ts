import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateKeyPair, parseSealed, privateKeyPem, type KeyPair } from '@lowcloud/api';
import { openSealed } from '@lowcloud/api/secrets';
import { repoRoot, runCli } from '../helpers/cli.js';

/**
 * Sealing, validating and planning sealed secrets through the CLI, with no agent: everything the
 * planner does with a secret it does without its plaintext.
 */
const PLAIN = 'pw-5f0c1e9a-never-printed';
const FILE_PLAIN = 'token = "cfg-77d2b1-never-printed"\n';

let dir: string;
let m1: KeyPair;
let m2: KeyPair;

const infra = (env: string, machine = 'm1') => `version: 1
machines:
  m1: { agent: ws://127.0.0.1:7443, key: ${m1.publicKey} }
  m2: { agent: ws://127.0.0.1:7444, key: ${m2.publicKey} }
processes:
  db-client:
    machine: ${machine}
    binary: app.wasm
    env: { LOG: info, DB_PASSWORD: "${env}" }
  web:
    machine: ${machine}
    binary: app.wasm
    config: { /etc/app.toml: app.toml.sealed }
  plain:
    machine: m1
    binary: app.wasm
    env: { LOG: info }
`;

const cli = (args: string[], input?: string) => runCli(args, { cwd: dir, ...(input === undefined ? {} : { input }) });
const seal = async (machine: string, input: string, file = 'infra.yaml') => {
  const r = await cli(['secret', 'seal', '--machine', machine, file], input);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.trim();
};

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-secrets-'));
  m1 = generateKeyPair();
  m2 = generateKeyPair();
  copyFileSync(path.join(repoRoot, 'test/fixtures/guests/hello.wasm'), path.join(dir, 'app.wasm'));
  writeFileSync(path.join(dir, 'infra.yaml'), infra('placeholder'));
  writeFileSync(path.join(dir, 'app.toml'), FILE_PLAIN);
  const sealedFile = await cli(['secret', 'seal', '--machine', 'm1', '--file', 'app.toml', 'infra.yaml']);
  expect(sealedFile.code).toBe(0);
  writeFileSync(path.join(dir, 'app.toml.sealed'), sealedFile.stdout);
  rmSync(path.join(dir, 'app.toml'));
  writeFileSync(path.join(dir, 'infra.yaml'), infra(await seal('m1', `${PLAIN}\n`)));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('lowcloud secret seal', () => {
  it('seals standard input (one trailing newline dropped) and --file (bytes as they are) to the machine pinned key', async () => {
    const text = readFileSync(path.join(dir, 'infra.yaml'), 'utf8');
    const env = /DB_PASSWORD: "(sealed:v1:[^"]+)"/.exec(text)?.[1] as string;
    expect(parseSealed(env).recipient).toBe(m1.publicKey);
    expect(Buffer.from(openSealed(env, m1)).toString()).toBe(PLAIN);
    expect(Buffer.from(openSealed(readFileSync(path.join(dir, 'app.toml.sealed'), 'utf8'), m1)).toString()).toBe(FILE_PLAIN);
    expect(() => openSealed(env, m2)).toThrow(/not to this machine's key/);
  });

  it('refuses an unknown machine, a machine with no pinned key and empty input, naming the fix', async () => {
    let r = await cli(['secret', 'seal', '--machine', 'm3', 'infra.yaml'], 'x');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no machine "m3" (machines: m1, m2)');
    writeFileSync(path.join(dir, 'local.yaml'), 'version: 1\nmachines:\n  here: { agent: local }\n');
    r = await cli(['secret', 'seal', '--machine', 'here', 'local.yaml'], 'x');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('machine here pins no key');
    expect(r.stderr).toContain('.lowcloud/agents/here/state/agent.pub');
    r = await cli(['secret', 'seal', '--machine', 'm1', 'infra.yaml'], '');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nothing to seal');
  });
});

describe('validate with sealed values', () => {
  it('accepts values sealed to the machine each process runs on', async () => {
    const r = await cli(['validate', 'infra.yaml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a process moved to another machine: each of its secrets is an error that shows the command, and nothing leaks', async () => {
    const text = readFileSync(path.join(dir, 'infra.yaml'), 'utf8').replace(/machine: m1\n(\s+binary: app.wasm\n\s+(env: \{ LOG: info, DB|config))/g, 'machine: m2\n$1');
    writeFileSync(path.join(dir, 'moved.yaml'), text);
    const r = await cli(['validate', 'moved.yaml']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`moved.yaml:9:36: processes.db-client.env.DB_PASSWORD: sealed to the key ${m1.publicKey}, not to machine m2's key ${m2.publicKey}`);
    expect(r.stderr).toContain('(SECRET_WRONG_MACHINE)');
    expect(r.stderr).toContain('lowcloud secret seal --machine m2 moved.yaml;');
    expect(r.stderr).toContain('processes.web.config./etc/app.toml: sealed to the key');
    expect(r.stderr).toContain('lowcloud secret seal --machine m2 --file PLAIN-FILE moved.yaml > app.toml.sealed');
    expect(r.stderr).toContain('2 error(s); nothing was changed.');
  });

  it('an unknown version, a cut value and garbage after the prefix are errors with their codes', async () => {
    const text = readFileSync(path.join(dir, 'infra.yaml'), 'utf8');
    for (const [change, code] of [
      [(s: string) => s.replace('sealed:v1:', 'sealed:v9:'), 'SECRET_UNKNOWN_VERSION'],
      [(s: string) => s.replace(/(sealed:v1:)([^"]+)"/, (_m, p: string, b: string) => `${p}${b.slice(0, 40)}"`), 'SECRET_MALFORMED'],
      [(s: string) => s.replace('sealed:v1:', 'sealed:v1:!!'), 'SECRET_MALFORMED'],
    ] as const) {
      writeFileSync(path.join(dir, 'bad.yaml'), change(text));
      const r = await cli(['validate', 'bad.yaml']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`processes\\.db-client\\.env\\.DB_PASSWORD: .*\\(${code}\\)`));
    }
  });
});

describe('plan with sealed values', () => {
  it('a re-sealed env value replaces its process, a re-sealed config file is one replace-config: reason secret-changed; no plaintext anywhere', async () => {
    copyFileSync(path.join(dir, 'infra.yaml'), path.join(dir, 'old.yaml'));
    copyFileSync(path.join(dir, 'app.toml.sealed'), path.join(dir, 'old.toml.sealed'));
    writeFileSync(path.join(dir, 'old.yaml'), readFileSync(path.join(dir, 'old.yaml'), 'utf8').replace('app.toml.sealed', 'old.toml.sealed'));
    // The same plaintexts sealed again: new ciphertexts, so new identities.
    writeFileSync(path.join(dir, 'infra.yaml'), infra(await seal('m1', PLAIN)));
    writeFileSync(path.join(dir, 'app.toml'), FILE_PLAIN);
    const f = await cli(['secret', 'seal', '--machine', 'm1', '--file', 'app.toml', 'infra.yaml']);
    writeFileSync(path.join(dir, 'app.toml.sealed'), f.stdout);
    rmSync(path.join(dir, 'app.toml'));

    const human = await cli(['plan', 'old.yaml', 'infra.yaml']);
    expect(human.stderr).toBe('');
    expect(human.stdout).toContain('Plan: 0 to start, 0 to stop, 2 to restart.');
    expect(human.stdout).toContain('  - stop           db-client  replace: secret changed (env.DB_PASSWORD)');
    expect(human.stdout).toContain('  + start          db-client  replace: secret changed (env.DB_PASSWORD)');
    expect(human.stdout).toContain('      env.DB_PASSWORD: (set) -> (changed)');
    expect(human.stdout).toContain('  ~ replace-config web        secret changed (/etc/app.toml); restarts once');
    expect(human.stdout).not.toContain('plain');
    const json = await cli(['plan', 'old.yaml', 'infra.yaml', '--json']);
    const doc = JSON.parse(json.stdout) as { changes: { process: string; actions: string[]; reason: string; paths: string[] }[]; calls: unknown[] };
    expect(doc.changes).toEqual([
      expect.objectContaining({ process: 'db-client', actions: ['stop', 'start'], reason: 'secret-changed', paths: ['env.DB_PASSWORD'] }),
      expect.objectContaining({ process: 'web', actions: ['replace-config'], reason: 'secret-changed', paths: ['config./etc/app.toml'] }),
    ]);
    expect(doc.calls).toHaveLength(3);
    for (const out of [human.stdout, json.stdout]) {
      expect(out).not.toContain(PLAIN);
      expect(out).not.toContain('cfg-77d2b1');
    }
    // A sealed value next to a plain change is an ordinary replace.
    writeFileSync(path.join(dir, 'mixed.yaml'), readFileSync(path.join(dir, 'old.yaml'), 'utf8').replace('LOG: info, DB', 'LOG: debug, DB'));
    const mixed = JSON.parse((await cli(['plan', 'old.yaml', 'mixed.yaml', '--json'])).stdout) as typeof doc;
    expect(mixed.changes).toEqual([expect.objectContaining({ process: 'db-client', reason: 'replaced', paths: ['env.LOG'] })]);
  });
});

describe('a local machine that pins a key', () => {
  it('up refuses a keys/<machine>.key that is not the pinned key, naming both, and starts no agent', async () => {
    mkdirSync(path.join(dir, 'keys'));
    writeFileSync(path.join(dir, 'keys/here.key'), privateKeyPem(m2.privateKey), { mode: 0o600 });
    writeFileSync(path.join(dir, 'local.yaml'), `version: 1\nmachines:\n  here: { agent: local, key: "${m1.publicKey}" }\n`);
    const r = await cli(['up', 'local.yaml']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is the key ${m2.publicKey}, but machine here pins ${m1.publicKey}`);
    expect(existsSync(path.join(dir, '.lowcloud/agents/here/state/agent.key'))).toBe(false);
  });
});

describe('lowcloud secret reseal', () => {
  it('after re-keying: lists what is sealed to the old key and changes nothing; with --old-key re-seals exactly those, in place', async () => {
    const before = readFileSync(path.join(dir, 'infra.yaml'), 'utf8');
    const oldM1 = m1;
    m1 = generateKeyPair();
    const rekeyed = before.replace(oldM1.publicKey, m1.publicKey);
    writeFileSync(path.join(dir, 'infra.yaml'), rekeyed);
    writeFileSync(path.join(dir, 'old.key'), privateKeyPem(oldM1.privateKey));
    expect((await cli(['validate', 'infra.yaml'])).stderr).toContain('2 error(s)');

    let r = await cli(['secret', 'reseal', '--machine', 'm1', 'infra.yaml']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`2 sealed value(s) of machine m1 are not sealed to its pinned key ${m1.publicKey}:`);
    expect(r.stderr).toContain('processes.db-client.env.DB_PASSWORD: sealed to');
    expect(r.stderr).toContain('processes.web.config./etc/app.toml (app.toml.sealed): sealed to');
    expect(r.stderr).toContain('Nothing was changed.');
    expect(readFileSync(path.join(dir, 'infra.yaml'), 'utf8')).toBe(rekeyed);

    writeFileSync(path.join(dir, 'other.key'), privateKeyPem(m2.privateKey));
    r = await cli(['secret', 'reseal', '--machine', 'm1', '--old-key', 'other.key', 'infra.yaml']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('sealed to neither the pinned key nor the old key');
    expect(readFileSync(path.join(dir, 'infra.yaml'), 'utf8')).toBe(rekeyed);

    copyFileSync(path.join(dir, 'infra.yaml'), path.join(dir, 'before-reseal.yaml'));
    r = await cli(['secret', 'reseal', '--machine', 'm1', '--old-key', 'old.key', 'infra.yaml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Re-sealed 2 value(s) of machine m1');
    const after = readFileSync(path.join(dir, 'infra.yaml'), 'utf8');
    // Every other byte kept: only the sealed string differs.
    expect(after.replace(/sealed:v1:[A-Za-z0-9_-]+/, 'X')).toBe(rekeyed.replace(/sealed:v1:[A-Za-z0-9_-]+/, 'X'));
    const env = /DB_PASSWORD: "(sealed:v1:[^"]+)"/.exec(after)?.[1] as string;
    expect(Buffer.from(openSealed(env, m1)).toString()).toBe(PLAIN);
    expect(Buffer.from(openSealed(readFileSync(path.join(dir, 'app.toml.sealed'), 'utf8'), m1)).toString()).toBe(FILE_PLAIN);
    expect((await cli(['validate', 'infra.yaml'])).code).toBe(0);
    expect((await cli(['secret', 'reseal', '--machine', 'm1', 'infra.yaml'])).stdout).toContain('nothing to do');
  });
});
