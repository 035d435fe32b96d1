import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateKeyPair, privateKeyPem, sha256Hex, type KeyPair, type ProcessSpec } from '@lowcloud/api';
import { AgentClient, type ConnectOptions } from '@lowcloud/api/client';
import { afterAll } from 'vitest';
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
export function startAgent(stateDir: string, trust: string[], opts: StartOptions = {}): Promise<RunningAgent> {
  const args = [cliPath, 'agent', '--listen', `127.0.0.1:${opts.port ?? 0}`, '--state', stateDir, '--metrics-listen', '127.0.0.1:0', ...trust.flatMap((t) => ['--trust', t]), ...(opts.args ?? [])];
  if (opts.tls !== true) args.push('--insecure-loopback');
  let command = process.execPath;
  if (opts.wrap !== undefined) {
    args.unshift(...opts.wrap.slice(1), process.execPath);
    command = opts.wrap[0] as string;
  }
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

export interface StartOptions {
  tls?: boolean;
  env?: Record<string, string>;
  port?: number;
  args?: string[];
  uid?: number;
  /** A command that execs the agent (its argv follows): same pid, e.g. a private mount namespace. */
  wrap?: string[];
}

/**
 * The agent fixture every agent test uses: a temporary directory holding an operator key pair
 * (`ci.key`, `ci.pub`), the agents started in it (state in `stateDir` unless a test names another),
 * the clients connected to them, and one teardown that closes those clients, SIGKILLs those agents,
 * kills every guest recorded under the directory (`killGuestsUnder`) and removes it.
 * `useAgentFixture()` makes one and registers its teardown in the current suite.
 */
export class AgentFixture {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-agent-'));
  readonly stateDir = path.join(this.dir, 'state');
  readonly operator: KeyPair = generateKeyPair();
  /** The operator's public key file, trusted by every agent `start` makes unless `trust` is given. */
  readonly pubFile = path.join(this.dir, 'ci.pub');
  /** The operator's private key file (0600), for `lowcloud ... --key`. */
  readonly keyFile = path.join(this.dir, 'ci.key');
  private readonly agents = new Set<RunningAgent>();
  private readonly clients = new Set<AgentClient>();

  constructor() {
    writeFileSync(this.pubFile, `${this.operator.publicKey}\n`);
    writeFileSync(this.keyFile, privateKeyPem(this.operator.privateKey), { mode: 0o600 });
  }

  /** Starts an agent (see `startAgent`) on `stateDir` (default: the fixture's), trusting `trust` (default: the operator). */
  async start(opts: StartOptions & { stateDir?: string; trust?: string[] } = {}): Promise<RunningAgent> {
    const { stateDir = this.stateDir, trust = [this.pubFile], ...rest } = opts;
    const agent = await startAgent(stateDir, trust, rest);
    this.agents.add(agent);
    return agent;
  }

  /** Stops `agent` with `signal` (default SIGKILL, as a crash) and waits for it to exit. */
  async kill(agent: RunningAgent, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await killAgent(agent, signal);
    this.agents.delete(agent);
  }

  /** A client of `agent`, its key pinned, signed by the operator unless `opts` says otherwise; closed at teardown. */
  async connect(agent: RunningAgent, opts: ConnectOptions = {}): Promise<AgentClient> {
    const client = await AgentClient.connect(agent.url, { pinnedKey: agent.key, signer: this.operator, ...opts });
    this.clients.add(client);
    return client;
  }

  /** Closes every client, kills every agent this fixture started, then every guest under `dir`, and removes `dir`. */
  async close(): Promise<void> {
    for (const c of this.clients) c.close();
    for (const a of this.agents) await killAgent(a);
    killGuestsUnder(this.dir);
    // The launchers of the guests just killed write their exit records into the run directories
    // as they end: a removal that meets one retries (ENOTEMPTY, seen in CI on Node.js 20).
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
}

/** An `AgentFixture` torn down after the current suite (the file, or the `describe` it is called in). */
export function useAgentFixture(): AgentFixture {
  const fx = new AgentFixture();
  afterAll(() => fx.close());
  return fx;
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
