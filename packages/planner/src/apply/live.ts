import { ErrorCode, LowcloudError, parsePrivateKey, type AgentStatus, type KeyPair, type ResolvedMachine } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import fs from 'node:fs';
import { AgentUnreachableError, asError, MissingFileError } from '../errors.js';
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

/**
 * A map keyed by machine, in machine name order. Agents are asked concurrently and answer in any
 * order; everything listed per machine (status, errors, apply results) reads the maps in this one.
 */
export function byMachine<T>(m: ReadonlyMap<string, T>): Map<string, T> {
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export async function connectAll(endpoints: Endpoints, machines: string[], signer: KeyPair | undefined, timeoutMs = 15_000): Promise<{ clients: Map<string, AgentClient>; errors: Map<string, Error> }> {
  const clients = new Map<string, AgentClient>();
  const errors = new Map<string, Error>();
  await Promise.all(
    machines.map(async (m) => {
      const ep = endpoints[m];
      if (ep === undefined) {
        errors.set(m, new AgentUnreachableError(`${m}: no agent address (for agent: local, run \`lowcloud up\` first)`));
        return;
      }
      // A flaky link gets a few tries; a wrong key does not (it will not get better).
      for (let attempt = 1; attempt <= 3; attempt++) {
        try {
          clients.set(m, await AgentClient.connect(ep.url, { ...(ep.key === undefined ? {} : { pinnedKey: ep.key }), ...(signer === undefined ? {} : { signer }), timeoutMs }));
          errors.delete(m);
          return;
        } catch (err) {
          errors.set(m, asError(err));
          // A wrong key, or a key the agent does not trust, will not get better on retry.
          const code = (err as LowcloudError).code;
          if (code === ErrorCode.AGENT_KEY_MISMATCH || code === ErrorCode.UNKNOWN_KEY || code === ErrorCode.FORBIDDEN || code === ErrorCode.BAD_SIGNATURE) return;
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
    }),
  );
  return { clients: byMachine(clients), errors: byMachine(errors) };
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
