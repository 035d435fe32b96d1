import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, generateKeyPair, LowcloudError, parsePrivateKey, privateKeyPem, type KeyPair, type ResolvedMachine } from '@lowcloud/api';
import { AgentUnreachableError } from '../errors.js';
import { connectTo, DEFAULT_CONNECTIONS, type AgentLinks, type Endpoints } from './live.js';
import { mapLimited } from './limit.js';

/**
 * The embedded default: machines whose agent is `local` get a real agent process on this machine,
 * listening on loopback, with its state under `.lowcloud/` next to the infra file. The agent is
 * started through the `lowcloud` command (the planner never imports the node agent).
 */
export interface LocalDir {
  root: string;
  operatorKey: string;
  operatorPub: string;
}

export function localDir(infraFile: string): LocalDir {
  const root = path.join(path.dirname(path.resolve(infraFile)), '.lowcloud');
  return { root, operatorKey: path.join(root, 'operator.key'), operatorPub: path.join(root, 'operator.pub') };
}

/** The operator key `up` signs with, made on first use; true when this call made it. */
export function ensureOperatorKey(dir: LocalDir): boolean {
  if (fs.existsSync(dir.operatorKey)) return false;
  fs.mkdirSync(dir.root, { recursive: true, mode: 0o700 });
  const pair = generateKeyPair();
  fs.writeFileSync(dir.operatorKey, privateKeyPem(pair.privateKey), { mode: 0o600 });
  fs.writeFileSync(dir.operatorPub, `${pair.publicKey}\n`);
  return true;
}

/**
 * Takes back what `startLocalAgents` made in a `.lowcloud/` that did not exist before it (its agents
 * already stopped): their directories, the operator key if it made it, then the directories left
 * empty. Anything else found there (another `up` at the same time) is left.
 */
export function removeMadeState(dir: LocalDir, made: LocalAgentsStarted): void {
  for (const name of made.started) fs.rmSync(path.join(dir.root, 'agents', name), { recursive: true, force: true });
  if (made.madeKey) for (const f of [dir.operatorKey, dir.operatorPub]) fs.rmSync(f, { force: true });
  for (const d of [path.join(dir.root, 'agents'), path.join(dir.root, 'cache'), dir.root]) {
    try {
      fs.rmdirSync(d);
    } catch {
      // not empty, or not there
    }
  }
}

interface AgentRecord {
  pid: number;
  url: string;
  key: string;
}

const recordFile = (dir: LocalDir, machine: string) => path.join(dir.root, 'agents', machine, 'agent.json');

function readRecord(dir: LocalDir, machine: string): AgentRecord | null {
  try {
    return JSON.parse(fs.readFileSync(recordFile(dir, machine), 'utf8')) as AgentRecord;
  } catch {
    return null;
  }
}

/**
 * Whether any local agent of this directory has a record whose process is alive: an `up` after
 * the first. (A pid reused after a reboot only makes `up` start the agent after the load.)
 */
export function anyLocalAgentRecorded(dir: LocalDir): boolean {
  let machines: string[];
  try {
    machines = fs.readdirSync(path.join(dir.root, 'agents'));
  } catch {
    return false;
  }
  return machines.some((m) => {
    const pid = readRecord(dir, m)?.pid;
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  });
}

/**
 * Connect to every local agent of this directory whose record names a live process, keeping each
 * connection in `links` (`reachable` finds it there): an `up` after the first reaches its agents
 * while it loads the file, rather than after. Connects only: what to start is decided after the load.
 */
export async function reachRecordedAgents(dir: LocalDir, links: LinkKeeping): Promise<void> {
  let machines: string[];
  try {
    machines = fs.readdirSync(path.join(dir.root, 'agents'));
  } catch {
    return;
  }
  await Promise.all(
    machines.map(async (m) => {
      const rec = readRecord(dir, m);
      if (rec !== null && typeof rec.url === 'string' && typeof rec.key === 'string') await reachable(rec, m, links);
    }),
  );
}

/** Addresses of the local agents that are running now (for apply and status). */
export function localEndpoints(dir: LocalDir, machines: Record<string, ResolvedMachine>): Endpoints {
  const out: Endpoints = {};
  for (const m of Object.values(machines)) {
    if (m.agent !== 'local') {
      out[m.name] = { url: m.agent, ...(m.key === undefined ? {} : { key: m.key }) };
      continue;
    }
    const rec = readRecord(dir, m.name);
    if (rec !== null) out[m.name] = { url: rec.url, key: rec.key };
  }
  return out;
}

function lowcloudBin(): string {
  // packages/planner/dist/apply/local-agents.js -> bin/lowcloud.js at the repository root
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../bin/lowcloud.js');
}

/** What starting the local agents did. */
export interface LocalAgentsStarted {
  /** Machines whose agent this call started (`stopAgentsOf` stops them again). */
  started: string[];
  /** Machines whose agent runs now: started, or found running. */
  running: string[];
  /** What to print, in machine order. */
  lines: string[];
  /** The first failure (an agent that did not start, a key file that is not the pinned key), or null. */
  error: unknown;
  /** This call made the operator key. */
  madeKey: boolean;
}

/**
 * Start (or find running) the agent of each local machine: every agent is looked at, and the
 * missing ones started, at once (at most `limit` at a time). Never rejects: what failed is `error`,
 * and what did start is still listed.
 */
export async function startLocalAgents(dir: LocalDir, machines: Record<string, ResolvedMachine>, limit = DEFAULT_CONNECTIONS, how: LocalAgentOptions = {}, links?: LinkKeeping): Promise<LocalAgentsStarted> {
  const out: LocalAgentsStarted = { started: [], running: [], lines: [], error: null, madeKey: false };
  try {
    out.madeKey = ensureOperatorKey(dir);
  } catch (err) {
    out.error = err;
    return out;
  }
  const local = Object.values(machines).filter((m) => m.agent === 'local');
  const results = await mapLimited(local, limit, async (m) => {
    const rec = readRecord(dir, m.name);
    if (rec !== null && (await reachable(rec, m.name, links))) return { started: false, line: how.allowUnwalled === true ? `local agent for ${m.name} already runs (pid ${rec.pid}): --allow-unwalled applies to agents up starts (lowcloud down first)` : null };
    return { started: true, line: await startLocalAgent(dir, m, how) };
  });
  results.forEach((r, i) => {
    const name = (local[i] as ResolvedMachine).name;
    if (r.status === 'rejected') {
      out.error ??= r.reason;
      return;
    }
    out.running.push(name);
    if (r.value.started) out.started.push(name);
    if (r.value.line !== null) out.lines.push(r.value.line);
  });
  return out;
}

/** How `up` starts a local agent. */
export interface LocalAgentOptions {
  /** `lowcloud agent --allow-unwalled`: guests the wall cannot be built around run without it. */
  allowUnwalled?: boolean;
}

async function startLocalAgent(dir: LocalDir, m: ResolvedMachine, how: LocalAgentOptions): Promise<string> {
  const machine = m.name;
  const stateDir = path.join(dir.root, 'agents', machine, 'state');
  // One cache of admitted binaries for the computer's local agents: a component they share is
  // transpiled once between them, not once each (agent --cache).
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  seedPinnedKey(dir, m, stateDir);
  const logFile = path.join(dir.root, 'agents', machine, 'agent.log');
  const offset = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;
  const out = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, [lowcloudBin(), 'agent', '--listen', '127.0.0.1:0', '--state', stateDir, '--cache', path.join(dir.root, 'cache'), '--trust', dir.operatorPub, '--insecure-loopback', '--metrics-listen', '127.0.0.1:0', ...(how.allowUnwalled === true ? ['--allow-unwalled'] : [])], {
    detached: true,
    stdio: ['ignore', out, out],
  });
  child.unref();
  fs.closeSync(out);
  const started = await waitForLine(logFile, offset, child.pid as number);
  fs.writeFileSync(recordFile(dir, machine), JSON.stringify({ pid: child.pid, ...started }));
  return `started local agent for ${machine} (pid ${child.pid}) on ${started.url}${how.allowUnwalled === true ? ' (--allow-unwalled)' : ''}`;
}

/**
 * A local machine that pins a key, with the private half committed as `keys/<machine>.key` next to
 * the infra file, gets an agent with that key (seeded once, into a fresh state directory): so an
 * example can hold values sealed to a local agent (examples/kv-cluster). Such a key is a test key,
 * public with the repository; a real machine's key is never committed.
 */
function seedPinnedKey(dir: LocalDir, m: ResolvedMachine, stateDir: string): void {
  const src = path.join(path.dirname(dir.root), 'keys', `${m.name}.key`);
  if (m.key === undefined || fs.existsSync(path.join(stateDir, 'agent.key')) || !fs.existsSync(src)) return;
  const pair = parsePrivateKey(fs.readFileSync(src, 'utf8'), src);
  if (pair.publicKey !== m.key) throw new LowcloudError(ErrorCode.INVALID_INPUT, `${src} is the key ${pair.publicKey}, but machine ${m.name} pins ${m.key}: pin the key of that file, or remove the file`);
  fs.writeFileSync(path.join(stateDir, 'agent.key'), privateKeyPem(pair.privateKey), { mode: 0o600 });
}

/** Stop the local agents (their processes were stopped through the API first). */
export function stopLocalAgents(dir: LocalDir, machines: Record<string, ResolvedMachine>, log: (s: string) => void): void {
  stopAgentsOf(
    dir,
    Object.values(machines).filter((m) => m.agent === 'local').map((m) => m.name),
    log,
  );
}

/** Stop the local agents of these machines, by the pid each one's record names; returns the pids signalled. */
export function stopAgentsOf(dir: LocalDir, names: string[], log: (s: string) => void): number[] {
  const pids: number[] = [];
  for (const name of names) {
    const rec = readRecord(dir, name);
    if (rec === null) continue;
    try {
      process.kill(rec.pid, 'SIGTERM');
      pids.push(rec.pid);
      log(`stopped local agent for ${name} (pid ${rec.pid})`);
    } catch {
      // already gone
    }
    fs.rmSync(recordFile(dir, name), { force: true });
  }
  return pids;
}

/** Waits (at most `ms`) for these processes to be gone; true when they all are. */
export async function awaitExit(pids: number[], ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  while (pids.some(alive)) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Where `startLocalAgents` leaves the connection its check made to an agent already running, signed with `signer`. */
export interface LinkKeeping {
  to: AgentLinks;
  /** The key the command's calls are signed with (read when first asked; it may throw). */
  signer(): KeyPair;
}

/**
 * Whether the agent of a record runs and answers with the key it recorded. With `links`, the
 * connection is made as the command's next steps make theirs (authenticated with its key) and
 * kept for them; a key that cannot be read only makes the check connect without it.
 */
async function reachable(rec: AgentRecord, machine: string, links?: LinkKeeping): Promise<boolean> {
  // Reached already, from its record, while the file loaded (`reachRecordedAgents`).
  const kept = links?.to.peek(machine);
  if (kept !== undefined && kept.url === rec.url && kept.agent === rec.key) return true;
  let signer: KeyPair | undefined;
  try {
    signer = links?.signer();
  } catch {
    signer = undefined;
  }
  try {
    process.kill(rec.pid, 0);
    const c = await connectTo({ url: rec.url, key: rec.key }, signer, 3000);
    if (links !== undefined && signer !== undefined) links.to.keep(machine, c);
    else c.close();
    return true;
  } catch {
    return false;
  }
}

async function waitForLine(logFile: string, offset: number, pid: number): Promise<{ url: string; key: string }> {
  const end = Date.now() + 20_000;
  let text = '';
  while (Date.now() < end) {
    text = fs.readFileSync(logFile).subarray(offset).toString('utf8');
    const all = [...text.matchAll(/listening on (\S+) key (\S+)/g)];
    const last = all.at(-1);
    if (last !== undefined) return { url: last[1] as string, key: last[2] as string };
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new AgentUnreachableError(`the local agent did not start; see ${logFile}:\n${text.split('\n').slice(-5).join('\n')}`);
}
