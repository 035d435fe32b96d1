import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex, specDigest } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { repoRoot } from '../helpers/cli.js';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { alive, guest, waitFor } from '../helpers/guests.js';

const hello = path.join(repoRoot, 'examples/hello/bin/hello.wasm');
const fx = useAgentFixture();
let agent: RunningAgent;
const guestPids: number[] = [];

beforeAll(async () => {
  agent = await fx.start();
});
afterAll(async () => {
  // The agent goes first, or it would restart the guests killed here.
  await fx.kill(agent);
  for (const pid of guestPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
});


describe('the agent never loses state', () => {
  it('SIGKILL ten times while guests run: same pids, no restarts, desired state intact', async () => {
    const c = await fx.connect(agent);
    const a = await uploadSpec(c, 'sleeper', guest('sleeper'));
    const b = await uploadSpec(c, 'hello', hello, { args: ['/etc/hello.conf', '1'], grants: { memory: 32 << 20, disk: 1 << 20, network: { listen: [], connect: [] } } }, { '/etc/hello.conf': 'Hi\n' });
    await c.start(a);
    await c.start(b);
    const before = await c.status();
    c.close();
    const pids = before.processes.map((p) => p.pid);
    guestPids.push(...(pids.filter((p) => p !== null) as number[]));
    expect(pids.every((p) => p !== null)).toBe(true);
    for (let i = 0; i < 10; i++) {
      await fx.kill(agent, 'SIGKILL');
      expect(pids.every((p) => alive(p as number))).toBe(true);
      agent = await fx.start();
    }
    const c2 = await fx.connect(agent);
    const after = await c2.status();
    expect(after.generation).toBe(before.generation);
    expect(after.processes.map((p) => [p.name, p.specDigest, p.pid, p.restarts, p.state])).toEqual(before.processes.map((p) => [p.name, p.specDigest, p.pid, 0, 'running']));
    await c2.stop('sleeper', 1000);
    await c2.stop('hello', 1000);
    c2.close();
  });

  it('after a reboot (agent and guests gone) the agent starts every process of its desired state again', async () => {
    const c = await fx.connect(agent);
    await c.start(await uploadSpec(c, 'boot-a', guest('sleeper')));
    await c.start(await uploadSpec(c, 'boot-b', guest('sleeper'), { restart: 'never' }));
    const before = (await c.status()).processes.filter((p) => p.name.startsWith('boot-'));
    c.close();
    // A reboot: the agent dies and so does every guest (by pid, each checked to be that guest).
    await fx.kill(agent, 'SIGKILL');
    for (const p of before) process.kill(p.pid as number, 'SIGKILL');
    await waitFor(() => before.every((p) => !alive(p.pid as number)), 5000, 'the guests to be gone');
    agent = await fx.start();
    const c2 = await fx.connect(agent);
    let after: typeof before = [];
    await waitFor(async () => {
      after = (await c2.status()).processes.filter((p) => p.name.startsWith('boot-'));
      return after.length === 2 && after.every((p) => p.state === 'running' && p.pid !== null && alive(p.pid));
    }, 15_000, 'both processes running again');
    guestPids.push(...after.map((p) => p.pid as number));
    // Started again from the desired state (whatever their restart policy), as new guests.
    expect(after.map((p) => [p.name, p.specDigest])).toEqual(before.map((p) => [p.name, p.specDigest]));
    expect(after.filter((p) => before.some((b) => b.pid === p.pid))).toEqual([]);
    await c2.stop('boot-a', 1000);
    await c2.stop('boot-b', 1000);
    c2.close();
  });

  /** Restart the agent so it dies at one crash point (packages/node-agent/src/agent/test-hooks.ts). */
  async function restartWithCrash(crash: string): Promise<void> {
    await fx.kill(agent, 'SIGKILL');
    agent = await fx.start({ env: { LOWCLOUD_TEST_HOOKS: '1', LOWCLOUD_TEST_CRASH: crash } });
  }
  /** The agent died at its crash point; start it again without one. */
  async function afterCrash(): Promise<AgentClient> {
    await waitFor(() => agent.child.exitCode !== null || agent.child.signalCode !== null, 10_000, 'the agent to die at its crash point');
    expect(agent.child.signalCode).toBe('SIGKILL');
    agent = await fx.start();
    return fx.connect(agent);
  }

  it('killed in the middle of a put-blob (after its second chunk is written, before the reply): the blob is partial, never corrupt, and the upload resumes there', async () => {
    await restartWithCrash('after-save:put-blob:2');
    const c = await fx.connect(agent);
    const big = Buffer.alloc(3 * 2 ** 20, 7);
    const digest = sha256Hex(big);
    const chunk = 256 * 1024;
    await c.call({ type: 'put-blob', id: 'p1', digest, size: big.length, offset: 0, data: big.subarray(0, chunk).toString('base64') });
    await expect(c.call({ type: 'put-blob', id: 'p2', digest, size: big.length, offset: chunk, data: big.subarray(chunk, 2 * chunk).toString('base64') })).rejects.toThrow();
    const c2 = await afterCrash();
    const st = await c2.blobStatus([digest]);
    expect(st).toEqual({ present: [], partial: { [digest]: 2 * chunk } });
    await c2.putBlob(digest, big, 2 * chunk);
    expect(await c2.blobStatus([digest])).toEqual({ present: [digest], partial: {} });
    expect(sha256Hex(readFileSync(path.join(fx.stateDir, 'blobs', digest)))).toBe(digest);
    c2.close();
  });

  it('a large upload goes out as pipelined chunks: stored whole and verified; a blob whose bytes do not match its digest is refused with the error, none published', async () => {
    const c = await fx.connect(agent);
    const big = Buffer.alloc(24 * 2 ** 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i * 2654435761 >>> 0, i);
    const digest = sha256Hex(big);
    // 1 MiB chunks, four in flight: 24 calls, the later ones sent before the earlier are answered.
    await c.putBlob(digest, big, 2 ** 20, 4);
    expect(await c.blobStatus([digest])).toEqual({ present: [digest], partial: {} });
    expect(sha256Hex(readFileSync(path.join(fx.stateDir, 'blobs', digest)))).toBe(digest);
    const wrong = sha256Hex('something else');
    await expect(c.putBlob(wrong, big.subarray(0, 5 * 2 ** 20), 2 ** 20, 4)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect((await c.blobStatus([wrong])).present).toEqual([]);
    c.close();
  });

  // Killed at each point of a replace-config: the config the desired state names is the one running
  // afterwards, never a mix. Before the save: the old one; once the state is written (the old guest
  // still runs): the agent replaces it when it comes back; after the save: the new one.
  for (const [point, expected] of [
    ['before-save', 'Old'],
    ['state-written', 'New'],
    ['after-save', 'New'],
  ] as const) {
    it(`killed in a replace-config at ${point}: afterwards the ${expected} config runs, and only it`, async () => {
      const name = `cfg-${point}`;
      const c = await fx.connect(agent);
      const spec = await uploadSpec(c, name, hello, { args: ['/etc/hello.conf', '1'], grants: { disk: 1 << 20, network: { listen: [], connect: [] } } }, { '/etc/hello.conf': 'Old\n' });
      await c.start(spec);
      await c.putBlob(sha256Hex('New\n'), Buffer.from('New\n'));
      c.close();
      await restartWithCrash(`${point}:replace-config`);
      const c1 = await fx.connect(agent);
      const next = { ...spec, config: { '/etc/hello.conf': sha256Hex('New\n') } };
      await expect(c1.replaceConfig(name, next.config, specDigest(next))).rejects.toThrow();
      const c2 = await afterCrash();
      const want = expected === 'New' ? specDigest(next) : specDigest(spec);
      expect((await c2.status()).processes.find((x) => x.name === name)?.specDigest).toBe(want);
      // The guest that runs is the one the desired state names, with that config in its log.
      await waitFor(async () => (await c2.status()).processes.find((x) => x.name === name)?.state === 'running' && readFileSync(path.join(fx.stateDir, `run/${name}/spec-digest`), 'utf8') === want, 10_000, `${name} running the ${expected} spec`);
      await waitFor(
        async () => {
          const lines: string[] = [];
          await c2.logs(name, { tail: 1 }, (l) => lines.push(l));
          await new Promise((r) => setTimeout(r, 50));
          return lines.at(-1)?.startsWith(expected) === true;
        },
        8000,
        `the guest to log with the ${expected} config`,
      );
      await c2.stop(name, 1000);
      c2.close();
    });
  }
});
