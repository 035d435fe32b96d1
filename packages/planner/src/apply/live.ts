import { ErrorCode, LowcloudError, parsePrivateKey, type AgentStatus, type KeyPair, type ResolvedMachine } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import fs from 'node:fs';
import { AgentUnreachableError, asError, MissingFileError } from '../errors.js';
import { DEFAULT_CONNECTIONS, mapLimited } from './limit.js';
import type { PlanState } from '../plan/types.js';

/** How to reach each machine's agent: resolved from the infra file, or from `up`'s local agents. */
export interface Endpoint {
  url: string;
  key?: string;
}

export type Endpoints = Record<string, Endpoint>;

export function loadSigner(file: string): KeyPair {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch {
    throw new MissingFileError(`--key ${file}: cannot read it; make one with \`lowcloud keygen --out ci\` and give ci.key`, file);
  }
  return parsePrivateKey(pem, `--key ${file}`);
}

// Lives in limit.ts: the CLI's flags read it without loading this module.
export { DEFAULT_CONNECTIONS };

/**
 * A map keyed by machine, in machine name order. Agents are asked concurrently and answer in any
 * order; everything listed per machine (status, errors, apply results) reads the maps in this one.
 */
export function byMachine<T>(m: ReadonlyMap<string, T>): Map<string, T> {
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Calls in flight per machine during an apply (the client's default is 64). The agent takes the
 * calls waiting together as one group, up to 1,024 (one `state.json` write and one audit append,
 * each with its fsync, and every reply of a group sent when its last act is done): with 64 in
 * flight a 1,000-start apply was ~30 groups, 60 fsyncs, ~0.5 s of a 2 s `up` on a busy disk; with
 * 256, 4-5 groups, each sent only when the one before was answered (~0.45 s apiece); with 1,024,
 * two (the first call alone, the rest behind it).
 */
export const APPLY_WINDOW = 1024;

/** One try at connecting to an agent (its key checked against the pinned one, if any). */
export function connectTo(ep: Endpoint, signer: KeyPair | undefined, timeoutMs: number): Promise<AgentClient> {
  // The first call goes out behind `authenticate`: a round trip less per machine.
  return AgentClient.connect(ep.url, { ...(ep.key === undefined ? {} : { pinnedKey: ep.key }), ...(signer === undefined ? {} : { signer }), timeoutMs, pipelineAuthenticate: true, window: APPLY_WINDOW });
}

/** Connect to one machine's agent. A flaky link gets a few tries; a wrong key does not (it will not get better). */
export async function connectOne(endpoints: Endpoints, machine: string, signer: KeyPair | undefined, timeoutMs = 15_000, links?: AgentLinks): Promise<AgentClient> {
  const kept = links?.take(machine);
  if (kept !== undefined) return kept;
  const ep = endpoints[machine];
  if (ep === undefined) throw new AgentUnreachableError(`${machine}: no agent address (for agent: local, run \`lowcloud up\` first)`);
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectTo(ep, signer, timeoutMs);
    } catch (err) {
      const code = (err as LowcloudError).code;
      if (attempt >= 3 || code === ErrorCode.AGENT_KEY_MISMATCH || code === ErrorCode.UNKNOWN_KEY || code === ErrorCode.FORBIDDEN || code === ErrorCode.BAD_SIGNATURE) throw asError(err);
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** Connections an `AgentLinks` holds at most. */
const KEPT_LINKS = 64;

/**
 * Connections one command keeps open from one step to the next, at most one a machine: `up` reaches
 * each local agent once for its check that the agent runs, its live state and its apply. Each
 * connect is a WebSocket upgrade, a hello the agent signs and an authenticate; three of them were
 * ~40 ms of a 1,000-start `up`'s serial path. A step takes a machine's connection (`take`), or
 * connects as it did without one, and gives it back (`keep`) when it is done with it.
 */
export class AgentLinks {
  private readonly open = new Map<string, AgentClient>();

  /** The open connection kept for `machine`, now the caller's (undefined if none, or it closed). */
  take(machine: string): AgentClient | undefined {
    const c = this.open.get(machine);
    this.open.delete(machine);
    return c;
  }

  /** The open connection kept for `machine`, left there. */
  peek(machine: string): AgentClient | undefined {
    return this.open.get(machine);
  }

  keep(machine: string, client: AgentClient): void {
    this.open.get(machine)?.close();
    // Bounded as the apply bounds what it holds open: past it, a step connects again.
    if (this.open.size >= KEPT_LINKS) {
      client.close();
      return;
    }
    this.open.set(machine, client);
    // Closed meanwhile (the agent restarted or dropped it): the next step connects again.
    client.onClose(() => this.open.get(machine) === client && this.open.delete(machine));
  }

  closeAll(): void {
    for (const c of this.open.values()) c.close();
    this.open.clear();
  }
}

/** Connections to every machine at once, held open together (`events` follows them all). */
export async function connectAll(endpoints: Endpoints, machines: string[], signer: KeyPair | undefined, timeoutMs = 15_000): Promise<{ clients: Map<string, AgentClient>; errors: Map<string, Error> }> {
  const clients = new Map<string, AgentClient>();
  const errors = new Map<string, Error>();
  await Promise.all(
    machines.map(async (m) => {
      try {
        clients.set(m, await connectOne(endpoints, m, signer, timeoutMs));
      } catch (err) {
        errors.set(m, asError(err));
      }
    }),
  );
  return { clients: byMachine(clients), errors: byMachine(errors) };
}

/**
 * The status of every machine, at most `limit` connections open at once, each closed once it
 * answered (with `links`, kept there for the command's next step). Machines that could not be
 * reached, failed their key check or refused are in `errors`.
 */
export async function statusAll(endpoints: Endpoints, machines: string[], signer: KeyPair, limit = DEFAULT_CONNECTIONS, timeoutMs = 15_000, links?: AgentLinks): Promise<{ statuses: Map<string, AgentStatus>; errors: Map<string, Error> }> {
  const statuses = new Map<string, AgentStatus>();
  const errors = new Map<string, Error>();
  await mapLimited(machines, limit, async (m) => {
    let client: AgentClient;
    try {
      client = await connectOne(endpoints, m, signer, timeoutMs, links);
    } catch (err) {
      errors.set(m, asError(err));
      return;
    }
    let ok = false;
    try {
      statuses.set(m, await client.status());
      ok = true;
    } catch (err) {
      errors.set(m, asError(err));
    } finally {
      // With `links`, a connection that answered stays open for the command's next step.
      if (ok && links !== undefined) links.keep(m, client);
      else client.close();
    }
  });
  return { statuses: byMachine(statuses), errors: byMachine(errors) };
}

/** The live state of the fleet, as a PlanState the planner can diff against a file. */
export function liveState(machines: Record<string, ResolvedMachine>, statuses: Map<string, AgentStatus>): PlanState {
  const processes: PlanState['processes'] = {};
  for (const [machine, st] of statuses) {
    for (const p of st.processes) {
      const { envDigests, ...spec } = p.spec;
      processes[p.name] = { name: p.name, machine, spec: { ...spec, env: {} }, digest: p.specDigest, envDigests };
    }
  }
  return { machines, processes };
}
