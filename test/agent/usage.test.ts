import { linkSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ProcessStatus } from '@lowcloud/api';
import { ENTRY_BYTES, jspiNode, usageOf } from '@lowcloud/sandbox';
import { AgentClient } from '@lowcloud/api/client';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest, waitFor } from '../helpers/guests.js';

const FILES = 50_000;
const fx = useAgentFixture();
let agent: RunningAgent;
let c: AgentClient;
beforeAll(async () => {
  // Walk the data directories every second here (10 s by default), so a walk is seen soon.
  agent = await fx.start({ env: { LOWCLOUD_DISK_INTERVAL_MS: '1000' } });
  c = await fx.connect(agent);
});

const statusUsage = async (name: string): Promise<NonNullable<ProcessStatus['usage']>> => {
  const p = (await c.status()).processes.find((x) => x.name === name);
  if (p?.usage === null || p?.usage === undefined) throw new Error(`${name} has no usage: ${JSON.stringify(p)}`);
  return p.usage;
};

describe('status: disk use is measured off the event loop and cached, with its time', () => {
  it(`a guest with ${FILES} one-byte files in /data and a hard link: status reports what the disk grant is charged (4096 per entry, the linked file's byte once, ${FILES * (ENTRY_BYTES + 1) + ENTRY_BYTES} bytes, the quota's own figure), answers three times during one walk of the directory, and says when it last measured (within the last minute)`, async () => {
    // The guest itself makes the files (one byte each) through its WASI filesystem.
    await c.start(await uploadSpec(c, 'many', guest('manyfiles'), { args: ['/data', String(FILES), '1'], grants: { disk: 1024 * 2 ** 20, network: { listen: [], connect: [] } } }));
    const log = path.join(fx.stateDir, 'logs/many.log');
    await waitFor(() => {
      try {
        return readFileSync(log, 'utf8').includes(`made ${FILES}`);
      } catch {
        return false;
      }
    }, 180_000, `the guest to make ${FILES} files`);
    // A second name for one file: one more entry, its byte counted once.
    const data = path.join(fx.stateDir, 'data/many');
    linkSync(path.join(data, 'f0'), path.join(data, 'f0-link'));
    const charged = FILES * (ENTRY_BYTES + 1) + ENTRY_BYTES;
    await waitFor(async () => (await statusUsage('many')).diskBytes === charged, 60_000, `a disk figure of ${charged} bytes`);
    // The figure the quota starts a guest from (sandbox's usageOf, walked synchronously): the same.
    expect(usageOf(data)).toBe(charged);

    // The signal that status is not blocked by the walk: replies that say a walk of this very
    // directory is under way (a synchronous walk could never be observed in progress), several of
    // them during one walk (the same last measurement time in each).
    const during: string[] = [];
    await waitFor(async () => {
      const u = await statusUsage('many');
      if (!u.diskMeasuring) {
        during.length = 0;
        return false;
      }
      during.push(String(u.diskMeasuredAt));
      return during.length >= 3 && new Set(during).size === 1;
    }, 60_000, 'three status replies answered during one walk of the 50,000 files');

    const u = await statusUsage('many');
    expect(u.diskMeasuredAt).not.toBeNull();
    expect(Date.now() - Date.parse(u.diskMeasuredAt as string)).toBeLessThan(60_000);
  });

  it('the walk never follows a symlink (a link to / counts as one entry, never what it points to)', async () => {
    const before = (await statusUsage('many')).diskMeasuredAt as string;
    symlinkSync('/', path.join(fx.stateDir, 'data/many/root-link'));
    // A measurement is stamped when its walk ends, so the first one after the link may have begun
    // before it: wait for the one after that, whose walk began after the link appeared.
    const at = async () => Date.parse((await statusUsage('many')).diskMeasuredAt ?? '0');
    await waitFor(async () => (await at()) > Date.parse(before) + 1, 30_000, 'a new measurement');
    const first = await at();
    await waitFor(async () => (await at()) > first, 30_000, 'a measurement begun after the link');
    await waitFor(async () => !(await statusUsage('many')).diskMeasuring, 30_000, 'the walk to finish');
    expect((await statusUsage('many')).diskBytes).toBe(FILES * (ENTRY_BYTES + 1) + 2 * ENTRY_BYTES);
    await c.stop('many', 500);
  });
});

describe.skipIf(jspiNode() === null)('status: a shared guest\'s own CPU and memory, without waiting on a busy host', () => {
  it('a shared guest shows its linear memory (level guest); beside a guest that computes without a pause (its host\'s one thread held), status still answers within a second, with the host\'s figures said to be the host\'s', async () => {
    const grants = { memory: 4 * 2 ** 20, network: { listen: [], connect: [] } };
    await c.start(await uploadSpec(c, 'idle', guest('sleeper'), { isolation: 'shared', restart: 'never', grants }));
    await waitFor(async () => (await statusUsage('idle')).level?.memory === 'guest', 30_000, 'the shared guest\'s own figures');
    const own = await statusUsage('idle');
    expect(own.level).toEqual({ memory: 'guest', cpu: 'guest' });
    expect(own.memoryBytes).toBeLessThanOrEqual(grants.memory);
    // Same grant, same group: the same host, whose thread this guest holds for 30 s.
    await c.start(await uploadSpec(c, 'busy', guest('spin'), { isolation: 'shared', restart: 'never', args: ['30'], grants }));
    const st = await c.status();
    const [idle, busy] = ['idle', 'busy'].map((n) => st.processes.find((p) => p.name === n));
    expect(busy?.host).toBe(idle?.host);
    // The spin has begun, and the figures above (reused by status for 500 ms) are old.
    await new Promise((r) => setTimeout(r, 600));
    const t = performance.now();
    const u = await statusUsage('idle');
    expect(performance.now() - t).toBeLessThan(1000);
    expect(u.level).toEqual({ memory: 'host', cpu: 'host' });
    expect(u.memoryBytes).toBeGreaterThan(8 * 2 ** 20); // the host's: a Node.js process
    // Repeated, the calls share that round of asks (500 ms while the same guests run) instead of
    // each sending the busy host its own and waiting its 250 ms: five take well under 5 x 250 ms.
    const t5 = performance.now();
    for (let i = 0; i < 5; i++) expect((await statusUsage('idle')).level?.memory).toBe('host');
    expect(performance.now() - t5).toBeLessThan(800);
    await c.stop('busy', 200);
    await c.stop('idle', 200);
  });
});
