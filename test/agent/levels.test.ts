import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest } from '../helpers/guests.js';
import { expectedLevels, machineFacts, strongest, type Level } from '../helpers/machine-facts.js';

// The level the agent reports for each grant must be the level this machine can give it, found out
// here by trying the operations each kernel layer needs (helpers/machine-facts.ts), never from the
// sandbox's own capability probe: a report that claims more than the machine has, or less, fails.
const facts = machineFacts();
const fx = useAgentFixture();
console.log(`machine facts: root ${facts.root}; ${(['memoryCgroup', 'cpuCgroup', 'nftables', 'diskImages', 'wall', 'wallUnprivileged'] as const).map((k) => `${k} ${facts[k] ? 'yes' : `no (${facts.why[k]})`}`).join('; ')}`);

const allGrants = { memory: 32 * 2 ** 20, cpu: 0.5, disk: 2 ** 20, network: { listen: [], connect: [] } };

/** The strongest level per grant of a guest started with every grant, and the report it came from (for the failure message). */
async function reportedLevels(agent: RunningAgent, name: string): Promise<{ levels: Record<string, string>; report: string }> {
  const c = await fx.connect(agent);
  await c.start(await uploadSpec(c, name, guest('sleeper'), { grants: allGrants }));
  const st = (await c.status()).processes.find((p) => p.name === name);
  await c.stop(name, 500);
  c.close();
  const e = st?.enforcement;
  return { levels: { memory: strongest(e?.memory), cpu: strongest(e?.cpu), disk: strongest(e?.disk), network: strongest(e?.network), isolation: strongest(e?.isolation) }, report: JSON.stringify(e, null, 1) };
}

describe('enforcement levels match what the machine can do', () => {
  describe('an agent as this test runs it', () => {
    let agent: RunningAgent;
    beforeAll(async () => {
      agent = await fx.start();
    });
    afterAll(() => fx.kill(agent));

    it('reports, for every grant and the wall (isolation), the level the machine facts call for', async () => {
      const { levels, report } = await reportedLevels(agent, 'levels');
      expect(levels, report).toEqual({ ...expectedLevels(facts), isolation: facts.wall ? 'kernel' : 'runtime' });
    });
  });

  describe.skipIf(!facts.root)('an agent without root (uid 65534) on the same machine', () => {
    let agent: RunningAgent;
    beforeAll(async () => {
      agent = await fx.start({ stateDir: path.join(fx.dir, 'state-nobody'), uid: 65534 });
    });
    afterAll(() => fx.kill(agent));

    it('reports the runtime layer for every grant (without root no kernel layer can be set up); the wall where bubblewrap runs unprivileged', async () => {
      const runtime: Record<string, Level> = { memory: 'runtime', cpu: 'runtime', disk: 'runtime', network: 'runtime', isolation: facts.wallUnprivileged ? 'kernel' : 'runtime' };
      const { levels, report } = await reportedLevels(agent, 'levels-nobody');
      expect(levels, report).toEqual(runtime);
    });
  });

  it('lowcloud run --verbose: memory, cpu and network at the facts\' level; disk at the runtime layer (run never mounts over a --dir)', async () => {
    const dir = path.join(fx.dir, 'run-data');
    const r = await runCli(['run', guest('hello'), '--memory', '32MiB', '--cpu', '0.5', '--disk', '1MiB', '--dir', `${dir}::/data`, '--verbose']);
    const lines = r.stderr.split('\n').filter((l) => /^ {2}\w+ +(kernel|runtime|advisory) /.test(l));
    const best = (grant: string) => strongest(lines.filter((l) => l.startsWith(`  ${grant} `)).map((l) => ({ level: l.trim().split(/ +/)[1] as string })));
    const want = expectedLevels(facts);
    expect({ memory: best('memory'), cpu: best('cpu'), disk: best('disk'), network: best('network'), isolation: best('isolation') }).toEqual({ ...want, disk: 'runtime', isolation: facts.wall ? 'kernel' : 'runtime' });
    const off = await runCli(['run', guest('hello'), '--memory', '32MiB', '--cpu', '0.5', '--no-kernel', '--verbose']);
    // --no-kernel is about the grants' layers; the wall around the guest host (isolation) stays.
    expect(off.stderr).not.toMatch(/^ {2}(memory|cpu|disk|network) +kernel /m);
  });
});
