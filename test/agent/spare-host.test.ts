import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ProcessSpec } from '@lowcloud/api';
import { jspiNode } from '@lowcloud/sandbox';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { alive, guest, sharedHostPids, waitFor } from '../helpers/guests.js';

/**
 * Warm shared guest hosts (issue 23): a `start` of a `shared` guest whose group has no host with
 * room starts one as it arrives, and an agent with `shared` processes starts one as it starts, so
 * that the next guest joins a running, walled host instead of waiting for a cold one; a group whose
 * host has room keeps no spare. A spare that dies is replaced; one ends with the agent (SIGTERM)
 * and with its group's last guest (`down`), so none leaks.
 */
const fx = useAgentFixture();

/** Shared guest hosts of the agent with this state directory: node running guest/shared.js with its control FIFOs there. */
/** The agent's shared guest hosts (their control FIFOs are under its state directory). */
const agentHostPids = (stateDir: string): number[] => sharedHostPids(path.join(stateDir, 'run', '.shared-hosts'));

describe.skipIf(jspiNode() === null)('warm shared guest hosts', () => {
  const stateDir = path.join(fx.dir, 'spare');
  let agent: RunningAgent;
  const seen = new Set<number>();
  afterAll(() => {
    for (const pid of seen) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  const spec = (base: ProcessSpec, name: string): ProcessSpec => ({ ...base, name });
  let base: ProcessSpec;
  const pidOf = async (c: Awaited<ReturnType<typeof fx.connect>>, name: string) => (await c.status()).processes.find((p) => p.name === name)?.pid as number;
  /** The one spare: a shared host of the agent no guest runs in. */
  const spareOf = async (c: Awaited<ReturnType<typeof fx.connect>>): Promise<number> => {
    let spare = 0;
    await waitFor(
      async () => {
        const used = new Set((await c.status()).processes.map((p) => p.pid));
        const spares = agentHostPids(stateDir).filter((p) => !used.has(p));
        spares.forEach((p) => seen.add(p));
        spare = spares.length === 1 ? (spares[0] as number) : 0;
        return spare !== 0;
      },
      30_000,
      'one spare shared host',
    );
    return spare;
  };

  it('the first shared start runs in the host its arrival started; the next guest fills that host, with no spare beside it', { timeout: 60_000 }, async () => {
    agent = await fx.start({ stateDir });
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    base = await uploadSpec(c, 's0', guest('sleeper'), { isolation: 'shared', grants: { memory: 4 << 20, network: { listen: [], connect: [] } } });
    await c.start(spec(base, 's0'));
    const host = await pidOf(c, 's0');
    seen.add(host);
    await c.start(spec(base, 's1'));
    expect(await pidOf(c, 's1')).toBe(host);
    // A host with 1,022 free places gets no spare (a walled Node.js start and ~35 MiB an agent).
    await new Promise((r) => setTimeout(r, 1500));
    agentHostPids(stateDir).forEach((p) => seen.add(p));
    expect(agentHostPids(stateDir)).toEqual([host]);
    // Which spec a shared guest runs is in its record, a line of its host's journal written before
    // it runs: no run directory of its own, no file of the agent's in one.
    const run = path.join(stateDir, 'run', 's0');
    expect(existsSync(run)).toBe(false);
    const hosts = path.join(stateDir, 'run', '.shared-hosts');
    const lines = readdirSync(hosts)
      .filter((f) => f.endsWith('.guests.jsonl'))
      .flatMap((f) => readFileSync(path.join(hosts, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { runDir?: string; guest?: { tag?: string } }));
    expect(lines.find((l) => l.runDir === run)?.guest?.tag).toMatch(/^[0-9a-f]{64}$/);
  });

  it('an agent started again with shared processes has a spare before any start (the host it re-attached is not its to fill); a spare that dies is replaced', { timeout: 60_000 }, async () => {
    const host = await pidOf(await fx.connect(agent, { timeoutMs: 60_000 }), 's0');
    await fx.kill(agent, 'SIGTERM');
    expect(alive(host)).toBe(true);
    agent = await fx.start({ stateDir });
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    const spare = await spareOf(c);
    expect(spare).not.toBe(host);
    process.kill(spare, 'SIGKILL');
    await waitFor(() => !alive(spare), 10_000, 'the spare killed');
    const next = await spareOf(c);
    expect(next).not.toBe(spare);
    expect([...(await c.status()).processes].map((p) => p.state)).toEqual(['running', 'running']);
  });

  it('the spare stops with the agent (SIGTERM); the host with guests runs on', { timeout: 60_000 }, async () => {
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    const spare = await spareOf(c);
    const host = await pidOf(c, 's0');
    c.close();
    await fx.kill(agent, 'SIGTERM');
    expect(alive(spare)).toBe(false);
    expect(alive(host)).toBe(true);
  });

  it('the next new guest of an agent started again runs in its spare', { timeout: 60_000 }, async () => {
    agent = await fx.start({ stateDir });
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    const spare = await spareOf(c);
    await c.start(spec(base, 's2'));
    expect(await pidOf(c, 's2')).toBe(spare);
  });

  it('no spare outlives the last guest of its group (down)', { timeout: 60_000 }, async () => {
    const c = await fx.connect(agent, { timeoutMs: 60_000 });
    await Promise.all(['s0', 's1', 's2'].map((n) => c.stop(n, 2000)));
    await waitFor(() => agentHostPids(stateDir).length === 0, 15_000, 'no shared host left');
  });
});
