import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ProcessSpec } from '@lowcloud/api';
import type { AgentClient } from '@lowcloud/api/client';
import { verifyAuditLog } from '@lowcloud/node-agent';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest, waitFor } from '../helpers/guests.js';

/**
 * Group commit: state-changing calls that arrive together (pipelined over one connection) are
 * committed with one write of state.json and one append to the audit log, each answered after its
 * commit. What a client was answered is never lost, whenever the agent dies.
 */
const fx = useAgentFixture();
let agent: RunningAgent;
afterAll(async () => {
  if (agent !== undefined) await fx.kill(agent);
});

const N = 40;
/** `hello` exits at once (restart: never): a real guest start, without N guests left running. */
async function specs(c: AgentClient, prefix: string): Promise<ProcessSpec[]> {
  const base = await uploadSpec(c, `${prefix}0`, guest('hello'), { restart: 'never' });
  return Array.from({ length: N }, (_, i) => ({ ...base, name: `${prefix}${i}` }));
}

const metric = async (a: RunningAgent, name: string): Promise<number> => {
  const text = await (await fetch(a.metricsUrl as string)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
};

const stateFile = () => JSON.parse(readFileSync(path.join(fx.stateDir, 'state.json'), 'utf8')) as { generation: number; processes: Record<string, unknown> };
const auditLines = () =>
  readFileSync(path.join(fx.stateDir, 'audit.log'), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; process?: string; generation?: number });

describe('group commit', () => {
  it(`${N} starts pipelined over one connection: committed in fewer groups than calls, each answered, each generation once, every audit line signed`, async () => {
    agent = await fx.start();
    // Forty guest starts on a busy machine may take longer than a client's default 15 s.
    const c = await fx.connect(agent, { timeoutMs: 120_000 });
    const list = await specs(c, 'g');
    const g0 = (await c.status()).generation;
    const groups0 = await metric(agent, 'lowcloud_agent_commit_groups_total');
    const results = await Promise.all(list.map((s) => c.start(s)));
    expect(results.every((r) => r.changed)).toBe(true);
    const groups = (await metric(agent, 'lowcloud_agent_commit_groups_total')) - groups0;
    expect(groups).toBeGreaterThan(0);
    expect(groups).toBeLessThan(N / 4);
    expect(await metric(agent, 'lowcloud_agent_commit_calls_total')).toBe(N);
    const st = stateFile();
    expect(st.generation).toBe(g0 + N);
    expect(Object.keys(st.processes).sort()).toEqual(list.map((s) => s.name).sort());
    // One line per call, in the order the client sent them, each with the generation it was made against.
    const starts = auditLines().filter((l) => l.type === 'start');
    expect(starts.map((l) => [l.process, l.generation])).toEqual(list.map((s, i) => [s.name, g0 + i]));
    expect(verifyAuditLog(path.join(fx.stateDir, 'audit.log'))).toMatchObject({ ok: true });
    // Stopped together too.
    expect((await Promise.all(list.map((s) => c.stop(s.name, 1000)))).every((r) => r.changed)).toBe(true);
    expect(stateFile()).toMatchObject({ generation: g0 + 2 * N, processes: {} });
  });

  it('SIGKILLed mid-group (state written, nothing acted on or audited): after a restart every call that was answered is in the state, running, with its audit line; the unanswered group finishes too', async () => {
    await fx.kill(agent);
    agent = await fx.start({ env: { LOWCLOUD_TEST_HOOKS: '1', LOWCLOUD_TEST_CRASH: `state-written:start:${N / 2}` } });
    const c = await fx.connect(agent, { timeoutMs: 120_000 });
    const list = await specs(c, 'k');
    const g0 = (await c.status()).generation;
    const answered: string[] = [];
    await Promise.allSettled(list.map((s) => c.start(s).then(() => answered.push(s.name))));
    await waitFor(() => agent.child.signalCode !== null, 10_000, 'the agent to die at its crash point');
    expect(answered.length).toBeLessThan(N);
    const saved = stateFile();
    // Everything answered is on disk, and the group that died is on disk as a whole.
    for (const name of answered) expect(saved.processes[name]).toBeDefined();
    expect(Object.keys(saved.processes)).toContain(`k${N / 2 - 1}`);
    agent = await fx.start();
    const c2 = await fx.connect(agent);
    let st = await c2.status();
    await waitFor(async () => {
      st = await c2.status();
      return st.processes.filter((p) => p.name.startsWith('k')).every((p) => p.state === 'exited');
    }, 30_000, 'every saved start to have run (hello exits at once)');
    const names = st.processes.filter((p) => p.name.startsWith('k')).map((p) => p.name);
    expect(names.sort()).toEqual(Object.keys(saved.processes).filter((n) => n.startsWith('k')).sort());
    expect(st.generation).toBe(saved.generation);
    // The agent appended the lines of the group it had saved but not audited, in order.
    const starts = auditLines().filter((l) => l.type === 'start' && l.process?.startsWith('k'));
    expect(starts.map((l) => l.process)).toEqual(list.map((s) => s.name).filter((n) => names.includes(n)));
    expect(starts.map((l) => l.generation)).toEqual(starts.map((_, i) => g0 + i));
    expect(verifyAuditLog(path.join(fx.stateDir, 'audit.log'))).toMatchObject({ ok: true });
  });
});
