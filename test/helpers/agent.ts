import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateKeyPair, privateKeyPem, sha256Hex, type KeyPair, type ProcessSpec } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { cliPath } from './cli.js';
import { alive, killGuestsUnder } from './guests.js';

export interface RunningAgent {
  url: string;
  /** http://127.0.0.1:PORT/metrics (each test agent on its own port). */
  metricsUrl: string | null;
  key: string;
  pid: number;
  stateDir: string;
  child: ChildProcess;
  /** Everything the agent printed so far (stdout and stderr). */
  output(): string;
}

/** A real agent process on 127.0.0.1:0; resolves once it printed its address and key. */
/**
 * `uid`: run the agent as that user (with setpriv, which execs: same pid), e.g. 65534 for a machine
 * where the agent has no root and so no kernel layer; its state directory is made and given to it.
 */
export function startAgent(stateDir: string, trust: string[], opts: { tls?: boolean; env?: Record<string, string>; port?: number; args?: string[]; uid?: number } = {}): Promise<RunningAgent> {
  const args = [cliPath, 'agent', '--listen', `127.0.0.1:${opts.port ?? 0}`, '--state', stateDir, '--metrics-listen', '127.0.0.1:0', ...trust.flatMap((t) => ['--trust', t]), ...(opts.args ?? [])];
  if (opts.tls !== true) args.push('--insecure-loopback');
  let command = process.execPath;
  if (opts.uid !== undefined) {
    mkdirSync(stateDir, { recursive: true });
    chownSync(stateDir, opts.uid, opts.uid);
    chmodSync(path.dirname(stateDir), 0o755); // a test's temporary directory: the agent reads its trust file there
    args.unshift(`--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', process.execPath);
    command = 'setpriv';
  }
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start: ${out}`)), 20_000);
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+) key (\S+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve({ url: m[1] as string, key: m[2] as string, metricsUrl: /metrics on (\S+)/.exec(out)?.[1] ?? null, pid: child.pid as number, stateDir, child, output: () => out });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited ${code}: ${out}`));
    });
  });
}

export async function killAgent(a: RunningAgent, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!alive(a.pid)) return;
  const gone = new Promise((r) => a.child.once('exit', r));
  a.child.kill(signal);
  await gone;
}

/** Fails unless the agent process still runs and answers a signed `status` with its own key. */
export async function expectServes(a: RunningAgent, signer: KeyPair): Promise<void> {
  if (!alive(a.pid)) throw new Error(`the agent (pid ${a.pid}) is no longer running`);
  const c = await AgentClient.connect(a.url, { pinnedKey: a.key, signer });
  try {
    const { agent } = await c.status();
    if (agent !== a.key) throw new Error(`status came from ${agent}, not ${a.key}`);
  } finally {
    c.close();
  }
}

/** A state directory and an operator key the agent trusts. */
export function agentFixture(): { dir: string; stateDir: string; operator: KeyPair; pubFile: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-agent-'));
  const operator = generateKeyPair();
  const pubFile = path.join(dir, 'ci.pub');
  writeFileSync(pubFile, `${operator.publicKey}\n`);
  writeFileSync(path.join(dir, 'ci.key'), privateKeyPem(operator.privateKey), { mode: 0o600 });
  return { dir, stateDir: path.join(dir, 'state'), operator, pubFile, remove: () => {
      killGuestsUnder(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A spec for a committed guest, with its blobs uploaded. */
export async function uploadSpec(client: AgentClient, name: string, wasmPath: string, extra: Partial<ProcessSpec> = {}, config: Record<string, string> = {}): Promise<ProcessSpec> {
  const wasm = readFileSync(wasmPath);
  await client.putBlob(sha256Hex(wasm), wasm);
  const cfg: Record<string, string> = {};
  for (const [guest, text] of Object.entries(config)) {
    await client.putBlob(sha256Hex(text), Buffer.from(text));
    cfg[guest] = sha256Hex(text);
  }
  return { name, binary: sha256Hex(wasm), args: [], env: {}, config: cfg, grants: { network: { listen: [], connect: [] } }, restart: 'always', ...extra };
}
