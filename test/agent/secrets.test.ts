import { cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessSpec } from '@lowcloud/api';
import { sealValue } from '@lowcloud/api/secrets';
import { runCli } from '../helpers/cli.js';
import { uploadSpec, useAgentFixture, type RunningAgent } from '../helpers/agent.js';
import { tempGitRepo } from '../helpers/git.js';
import { fnv1a64, guest, waitFor } from '../helpers/guests.js';

/**
 * Sealed secrets end to end (issue 20), with real agents: the operator seals with the CLI, the
 * agent on m1 opens its values only as the guest starts, and the guest (secretdigest.c) prints
 * their digests. The plaintexts are then looked for everywhere lowcloud writes or answers.
 */
const ENV_PLAIN = 'pw-3c9e41d7-only-in-the-guest';
const FILE_PLAIN = 'token = "cfg-b82f06a5-only-in-the-guest"\n';
const MARKS = ['3c9e41d7', 'b82f06a5'];

const fx = useAgentFixture();
const repo = tempGitRepo();
let m1: RunningAgent;
let m2: RunningAgent;
const key = ['--key', fx.keyFile];
const cli = (args: string[], input?: string) => runCli(args, { cwd: repo.dir, timeoutMs: 60_000, ...(input === undefined ? {} : { input }) });

function writeInfra(m1Key: string, env: string): void {
  writeFileSync(
    path.join(repo.dir, 'infra.yaml'),
    `version: 1
machines:
  m1: { agent: ${m1.url}, key: ${m1Key} }
  m2: { agent: ${m2.url}, key: ${m2.key} }
processes:
  app:
    machine: m1
    binary: bin/secretdigest.wasm
    args: [DB_PASSWORD, /etc/app/secret.toml]
    env: { LOG: info, DB_PASSWORD: "${env}" }
    config: { /etc/app/secret.toml: secret.toml.sealed }
    restart: always
  other:
    machine: m1
    binary: bin/sleeper.wasm
    restart: always
`,
  );
}

async function sealAll(): Promise<void> {
  writeInfra(m1.key, 'placeholder');
  // The plaintext file lives outside the repository, as an operator keeps it.
  writeFileSync(path.join(fx.dir, 'secret.toml'), FILE_PLAIN);
  const f = await cli(['secret', 'seal', '--machine', 'm1', '--file', path.join(fx.dir, 'secret.toml'), 'infra.yaml']);
  expect(f.code, f.stderr).toBe(0);
  writeFileSync(path.join(repo.dir, 'secret.toml.sealed'), f.stdout);
  const e = await cli(['secret', 'seal', '--machine', 'm1', 'infra.yaml'], `${ENV_PLAIN}\n`);
  expect(e.code, e.stderr).toBe(0);
  writeInfra(m1.key, e.stdout.trim());
}

/** Every regular file under `dir`, as bytes. */
function filesUnder(dir: string): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name);
    if (lstatSync(p).isFile()) out.push([p, readFileSync(p)]);
  }
  return out;
}

function expectNoPlaintext(where: string, text: string | Buffer): void {
  for (const m of MARKS) expect(Buffer.from(text).includes(m), `${where} holds a plaintext`).toBe(false);
}

/** The guest's log so far ('' before its first byte: the agent makes the file when output first arrives). */
const appLog = (a: RunningAgent) => {
  try {
    return readFileSync(path.join(a.stateDir, 'logs', 'app.log'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
};
const DIGESTS = [
  `env DB_PASSWORD fnv1a64=${fnv1a64(Buffer.from(ENV_PLAIN))} len=${ENV_PLAIN.length}`,
  `file /etc/app/secret.toml fnv1a64=${fnv1a64(Buffer.from(FILE_PLAIN))} len=${FILE_PLAIN.length}`,
  'file /etc/app/secret.toml write: refused',
];
const countOf = (text: string, s: string) => text.split(s).length - 1;
const pids = async (): Promise<Record<string, number | null>> => {
  const c = await fx.connect(m1);
  const s = await c.status();
  return Object.fromEntries(s.processes.map((p) => [p.name, p.pid]));
};

const outputs: [string, string][] = [];

beforeAll(async () => {
  m1 = await fx.start({ stateDir: path.join(fx.dir, 'state-m1') });
  m2 = await fx.start({ stateDir: path.join(fx.dir, 'state-m2') });
  mkdirSync(path.join(repo.dir, 'bin'));
  cpSync(guest('secretdigest'), path.join(repo.dir, 'bin/secretdigest.wasm'));
  cpSync(guest('sleeper'), path.join(repo.dir, 'bin/sleeper.wasm'));
  writeFileSync(path.join(repo.dir, 'infra.yaml'), 'version: 1\nmachines: {}\n');
  repo.commit('empty');
  await sealAll();
  repo.commit('app with secrets');
  const plan = await cli(['plan', '--base', 'HEAD~1', 'infra.yaml']);
  const planJson = await cli(['plan', '--base', 'HEAD~1', 'infra.yaml', '--json']);
  expect(plan.code, plan.stderr).toBe(0);
  const apply = await cli(['apply', '--base', 'HEAD~1', 'infra.yaml', ...key]);
  expect(apply.code, apply.stderr).toBe(0);
  outputs.push(['plan', plan.stdout + plan.stderr], ['plan --json', planJson.stdout + planJson.stderr], ['apply', apply.stdout + apply.stderr]);
  await waitFor(() => appLog(m1).includes('write:'), 20_000, 'the guest to print its digests');
}, 120_000);
afterAll(() => repo.remove());

describe('sealed secrets on a real agent', () => {
  it('a sealed env value and a sealed config file reach the guest, exactly', () => {
    const log = appLog(m1);
    for (const d of DIGESTS) expect(log).toContain(d);
  });

  it('a guest in a shared guest host gets them too (they reach it on its control channel, in memory)', async () => {
    const c = await fx.connect(m1);
    const env = /DB_PASSWORD: "(sealed:v1:[^"]+)"/.exec(readFileSync(path.join(repo.dir, 'infra.yaml'), 'utf8'))?.[1] as string;
    const spec = await uploadSpec(c, 'shared-app', guest('secretdigest'), { args: ['DB_PASSWORD', '/etc/app/secret.toml'], env: { DB_PASSWORD: env }, isolation: 'shared', grants: { memory: 8 * 2 ** 20, network: { listen: [], connect: [] } } }, { '/etc/app/secret.toml': readFileSync(path.join(repo.dir, 'secret.toml.sealed'), 'utf8') });
    await c.start(spec);
    const log = () => readFileSync(path.join(m1.stateDir, 'logs', 'shared-app.log'), 'utf8');
    await waitFor(
      () => {
        try {
          return log().includes('write:');
        } catch {
          return false;
        }
      },
      20_000,
      'the shared guest to print its digests',
    );
    for (const d of DIGESTS) expect(log()).toContain(d);
    await c.stop('shared-app');
  });

  it('the plaintext is nowhere: repository, plan (human, JSON), apply, the state directory, agent logs, status, /metrics', async () => {
    for (const [where, text] of outputs) expectNoPlaintext(where, text);
    for (const [file, bytes] of filesUnder(repo.dir)) expectNoPlaintext(file, bytes);
    for (const [file, bytes] of filesUnder(m1.stateDir)) expectNoPlaintext(file, bytes);
    expectNoPlaintext('the agent output', m1.output());
    const status = await cli(['status', 'infra.yaml', ...key]);
    const statusJson = await cli(['status', 'infra.yaml', '--json', ...key]);
    expect(status.code, status.stdout + status.stderr).toBe(0);
    expectNoPlaintext('status', status.stdout + status.stderr);
    expectNoPlaintext('status --json', statusJson.stdout);
    expectNoPlaintext('/metrics', await (await fetch(m1.metricsUrl as string)).text());
    const logs = await cli(['logs', 'infra.yaml', 'app', ...key]);
    expect(logs.stdout).toContain(DIGESTS[0]);
    expectNoPlaintext('lowcloud logs', logs.stdout);
  });

  it('another agent cannot open it; tampered, unknown-version and wrong-machine values each fail that start with their code, and nothing else changes', async () => {
    const before = await pids();
    const sealedEnv = /DB_PASSWORD: "(sealed:v1:[^"]+)"/.exec(readFileSync(path.join(repo.dir, 'infra.yaml'), 'utf8'))?.[1] as string;
    const sealedFile = readFileSync(path.join(repo.dir, 'secret.toml.sealed'), 'utf8');
    const body = Buffer.from(sealedEnv.slice('sealed:v1:'.length), 'base64url');
    body[body.length - 1] = (body[body.length - 1] as number) ^ 1;
    const tampered = `sealed:v1:${body.toString('base64url')}`;
    const fileBody = Buffer.from(sealedFile.trim().slice('sealed:v1:'.length), 'base64url');
    fileBody[70] = (fileBody[70] as number) ^ 1;

    const startCode = async (agent: RunningAgent, name: string, env: Record<string, string>, config: Record<string, string> = {}): Promise<string> => {
      const c = await fx.connect(agent);
      const spec: ProcessSpec = await uploadSpec(c, name, guest('secretdigest'), { env, restart: 'never' }, config);
      try {
        await c.start(spec);
      } catch (err) {
        const e = err as { code?: string; message: string };
        expectNoPlaintext(`the ${e.code} error`, e.message);
        return e.code ?? e.message;
      }
      return 'started';
    };
    // m2's agent holds its own key only: the value sealed to m1 does not open there.
    expect(await startCode(m2, 'stolen', { DB_PASSWORD: sealedEnv })).toBe('SECRET_WRONG_MACHINE');
    expect(await startCode(m2, 'stolen-file', {}, { '/etc/app/secret.toml': sealedFile })).toBe('SECRET_WRONG_MACHINE');
    expect(await startCode(m1, 'bad-tag', { DB_PASSWORD: tampered })).toBe('SECRET_DOES_NOT_OPEN');
    expect(await startCode(m1, 'bad-file', {}, { '/etc/app/secret.toml': `sealed:v1:${fileBody.toString('base64url')}\n` })).toBe('SECRET_DOES_NOT_OPEN');
    expect(await startCode(m1, 'v9', { DB_PASSWORD: sealedEnv.replace('sealed:v1:', 'sealed:v9:') })).toBe('SECRET_UNKNOWN_VERSION');
    expect(await startCode(m1, 'sealed-to-m2', { DB_PASSWORD: sealValue(Buffer.from('x'), m2.key) })).toBe('SECRET_WRONG_MACHINE');
    expect(await pids()).toEqual(before);
    const m2Status = await (await fx.connect(m2)).status();
    expect(m2Status.processes).toEqual([]);
  });

  it('rotation: the agent is re-keyed, `secret reseal --old-key` re-seals its values, and apply replaces exactly the process that uses them', async () => {
    const before = await pids();
    const logBefore = appLog(m1);
    // Re-key m1: keep its old key aside (the operator's copy), let the agent make a new one.
    await fx.kill(m1, 'SIGTERM');
    renameSync(path.join(m1.stateDir, 'agent.key'), path.join(fx.dir, 'm1-old.key'));
    const oldKey = m1.key;
    const oldUrl = m1.url;
    m1 = await fx.start({ stateDir: m1.stateDir });
    expect(m1.key).not.toBe(oldKey);
    const text = readFileSync(path.join(repo.dir, 'infra.yaml'), 'utf8');
    writeFileSync(path.join(repo.dir, 'infra.yaml'), text.replace(oldKey, m1.key).replace(oldUrl, m1.url));
    expect((await cli(['validate', 'infra.yaml'])).code).toBe(1);
    const r = await cli(['secret', 'reseal', '--machine', 'm1', '--old-key', path.join(fx.dir, 'm1-old.key'), 'infra.yaml']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Re-sealed 2 value(s) of machine m1');
    expect((await cli(['validate', 'infra.yaml'])).code).toBe(0);
    repo.commit('re-keyed m1');
    const plan = await cli(['plan', '--base', 'HEAD~1', 'infra.yaml', '--json']);
    const doc = JSON.parse(plan.stdout) as { changes: { process: string; reason: string }[] };
    expect(doc.changes.map((c) => [c.process, c.reason])).toEqual([['app', 'secret-changed']]);
    const apply = await cli(['apply', '--base', 'HEAD~1', 'infra.yaml', ...key]);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expectNoPlaintext('apply after reseal', apply.stdout + apply.stderr);
    const after = await pids();
    expect(after.other).toBe(before.other);
    expect(after.app).not.toBe(before.app);
    await waitFor(() => countOf(appLog(m1), DIGESTS[2] as string) > countOf(logBefore, DIGESTS[2] as string), 20_000, 'the replaced guest to print its digests');
    for (const d of DIGESTS) expect(countOf(appLog(m1), d)).toBeGreaterThan(countOf(logBefore, d));
    for (const [file, bytes] of filesUnder(m1.stateDir)) expectNoPlaintext(file, bytes);
  });
});
