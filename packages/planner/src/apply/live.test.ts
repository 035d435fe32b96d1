import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { publicSpec, specDigest, type AgentStatus, type ProcessSpec } from '@lowcloud/api';
import { diffStates } from '../plan/diff.js';
import type { PlanState } from '../plan/types.js';
import { connectAll, liveState } from './live.js';

const spec = (env: Record<string, string>): ProcessSpec => ({ name: 'p', binary: 'a'.repeat(64), args: [], env, config: {}, grants: { network: { listen: [], connect: [] } }, restart: 'always' });
const machines = { m: { name: 'm', agent: 'ws://127.0.0.1:1', capacity: {} } } as unknown as PlanState['machines'];

function live(s: ProcessSpec): PlanState {
  const st = { agent: 'k', generation: 1, startedAt: '', capabilities: {}, processes: [{ name: 'p', spec: publicSpec(s), specDigest: specDigest(s), state: 'running', pid: 1, restarts: 0, lastExit: null, enforcement: null, usage: null, nextRestart: null }] } as unknown as AgentStatus;
  return liveState(machines, new Map([['m', st]]));
}
const file = (s: ProcessSpec): PlanState => ({ machines, processes: { p: { name: 'p', machine: 'm', spec: s, digest: specDigest(s) } } });

describe('live state carries env digests, and the planner compares them', () => {
  it('the same env: no change; live state holds no values', () => {
    const s = spec({ DB_PASSWORD: 'hunter2', LOG: 'info' });
    expect(JSON.stringify(live(s))).not.toContain('hunter2');
    expect(diffStates(live(s), file(s))).toEqual([]);
  });

  it('a changed, added or removed variable is named, never its value', () => {
    const changes = diffStates(live(spec({ DB_PASSWORD: 'hunter2', LOG: 'info', OLD: '1' })), file(spec({ DB_PASSWORD: 'hunter3', LOG: 'info', NEW: '2' })));
    expect(changes).toHaveLength(1);
    expect(changes[0]?.fields).toEqual([
      { path: 'env.DB_PASSWORD', from: '(set)', to: '(changed)' },
      { path: 'env.NEW', from: '(unset)', to: '(set)' },
      { path: 'env.OLD', from: '(set)', to: '(unset)' },
    ]);
    expect(JSON.stringify(changes)).not.toMatch(/hunter/);
  });
});

describe('agents answer in any order; what is listed per machine is in machine name order', () => {
  it('connectAll: the agent that fails last is still listed first when its name sorts first', async () => {
    // "a": a server that accepts and never answers (fails at the timeout); "b": a closed port (refused at once).
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    try {
      const endpoints = { a: { url: `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}` }, b: { url: `ws://127.0.0.1:${closedPort}` } };
      const { errors } = await connectAll(endpoints, ['b', 'a'], undefined, 300);
      expect([...errors.keys()]).toEqual(['a', 'b']);
      expect(errors.get('b')?.message).toMatch(/ECONNREFUSED|refused/);
    } finally {
      silent.close();
    }
  });
});
