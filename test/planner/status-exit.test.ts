import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, privateKeyPem } from '@lowcloud/api';
import { runCli } from '../helpers/cli.js';
import { useAgentFixture, type RunningAgent } from '../helpers/agent.js';
import { tempGitRepo } from '../helpers/git.js';
import { guest } from '../helpers/guests.js';

const fx = useAgentFixture();
const repo = tempGitRepo();
let m1: RunningAgent;
let m2: RunningAgent;
let closedPort = 0;

/** p1 on m1, p2 on m2 (sleepers); `machines` overrides a machine's agent URL or key. */
function writeInfra(opts: { args?: string; url?: Partial<Record<'m1' | 'm2', string>>; key?: Partial<Record<'m1' | 'm2', string>> } = {}): void {
  const machine = (m: 'm1' | 'm2', a: RunningAgent) => `  ${m}:\n    agent: ${opts.url?.[m] ?? a.url}\n    key: ${opts.key?.[m] ?? a.key}\n    capacity: { cpu: 2, memory: 1GiB }`;
  const proc = (p: string, m: string, args: string) => `  ${p}:\n    machine: ${m}\n    binary: bin/sleeper.wasm\n    args: [${args}]\n    grants: { memory: 32MiB }\n    restart: always`;
  writeFileSync(
    path.join(repo.dir, 'infra.yaml'),
    `version: 1\nmachines:\n${machine('m1', m1)}\n${machine('m2', m2)}\nprocesses:\n${proc('p1', 'm1', opts.args ?? 'a')}\n${proc('p2', 'm2', 'b')}\n`,
  );
}

// Reads are signed too: the operator key the agents trust.
const key = () => ['--key', fx.keyFile];
const status = () => runCli(['status', 'infra.yaml', ...key()], { cwd: repo.dir, timeoutMs: 60_000 });

beforeAll(async () => {
  m1 = await fx.start({ stateDir: path.join(fx.dir, 'state-m1') });
  m2 = await fx.start({ stateDir: path.join(fx.dir, 'state-m2') });
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closedPort = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  mkdirSync(path.join(repo.dir, 'bin'));
  cpSync(guest('sleeper'), path.join(repo.dir, 'bin/sleeper.wasm'));
  writeInfra();
  repo.commit('first');
  const up = await runCli(['up', 'infra.yaml', '--key', fx.keyFile], { cwd: repo.dir, timeoutMs: 60_000 });
  expect(up.code, up.stderr).toBe(0);
});
afterAll(() => repo.remove());

describe('lowcloud status: exit codes say in sync, drift, or an agent that could not be checked', () => {
  it('exits 0 in sync', async () => {
    writeInfra();
    const r = await status();
    expect(r.stdout.split('\n')[0]).toBe('In sync: 2 process(es) match infra.yaml.');
    expect(r.code).toBe(0);
  });

  it('exits 2 on drift', async () => {
    writeInfra({ args: 'changed' });
    const r = await status();
    expect(r.stdout.split('\n')[0]).toBe('Drift: 1 of 2 process(es) differ from infra.yaml.');
    expect(r.stdout).toMatch(/m1 +p1 +different/);
    expect(r.code).toBe(2);
  });

  it('exits 1 when an agent fails its key check, and says "wrong key", not "unreachable"', async () => {
    writeInfra({ key: { m2: generateKeyPair().publicKey } });
    const r = await status();
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')[0]).toContain('m2 (wrong key)');
    expect(r.stdout).toMatch(/m2 +p2 +wrong-key/);
    expect(r.stdout).toContain("m2: wrong key: ");
    expect(r.stdout).not.toContain('unreachable');
    const j = await runCli(['status', 'infra.yaml', '--json', ...key()], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(j.code).toBe(1);
    expect((JSON.parse(j.stdout) as { agents: Record<string, { problem: string; code: string }> }).agents).toEqual({ m2: expect.objectContaining({ problem: 'wrong-key', code: 'AGENT_KEY_MISMATCH' }) });
  });

  it('exits 1 when an agent is unreachable; both kinds at once are told apart', async () => {
    writeInfra({ url: { m1: `ws://127.0.0.1:${closedPort}` }, key: { m2: generateKeyPair().publicKey } });
    const r = await status();
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')[0]).toContain('m1 (unreachable), m2 (wrong key)');
    expect(r.stdout).toMatch(/m1 +p1 +unreachable/);
    expect(r.stdout).toMatch(/m2 +p2 +wrong-key/);
  });

  it('exits 2 for a process in the file that does not run (missing) and one that runs but is not in the file (extra)', async () => {
    writeInfra();
    const file = path.join(repo.dir, 'infra.yaml');
    // p2 leaves the file (it still runs on m2: extra); p3 joins it (nothing runs it: missing).
    const text = readFileSync(file, 'utf8').replace(/ {2}p2:[\s\S]*$/, '  p3:\n    machine: m1\n    binary: bin/sleeper.wasm\n    args: [c]\n    restart: always\n');
    writeFileSync(file, text);
    const r = await status();
    expect(r.stdout.split('\n')[0]).toBe('Drift: 2 of 3 process(es) differ from infra.yaml.');
    expect(r.stdout).toMatch(/m1 +p3 +missing/);
    expect(r.stdout).toMatch(/m2 +p2 +extra +running pid \d+/);
    expect(r.code).toBe(2);
  });

  it('exits 1 when the agents refuse the key (not one they trust), naming each', async () => {
    writeInfra();
    const stranger = path.join(fx.dir, 'stranger.key');
    writeFileSync(stranger, privateKeyPem(generateKeyPair().privateKey), { mode: 0o600 });
    const r = await runCli(['status', 'infra.yaml', '--key', stranger], { cwd: repo.dir, timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')[0]).toMatch(/^Not checked: m1 \(refused status\), m2 \(refused status\); /);
    expect(r.stdout).toMatch(/m1 +p1 +refused/);
    expect(r.stdout).toContain('m2: refused status: key ed25519:');
    expect(r.stdout).toContain('is not trusted by this agent (add it with --trust, or --trust-read for reads only)');
  });

  it('--help documents the exit codes', async () => {
    const r = await runCli(['status', '--help']);
    expect(r.stdout).toContain('Exit codes: 0 in sync; 2 drift');
    expect(r.stdout).toContain('1 when any agent could not');
  });
});
