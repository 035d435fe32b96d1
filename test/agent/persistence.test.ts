import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex, specDigest } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { repoRoot } from '../helpers/cli.js';
import { agentFixture, killAgent, startAgent, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { alive, guest, waitFor } from '../helpers/guests.js';

const hello = path.join(repoRoot, 'examples/hello/bin/hello.wasm');
const fx = agentFixture();
let agent: RunningAgent;
const guestPids: number[] = [];

beforeAll(async () => {
  agent = await startAgent(fx.stateDir, [fx.pubFile]);
});
afterAll(async () => {
  await killAgent(agent);
  for (const pid of guestPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  fx.remove();
});

const connect = (a: RunningAgent) => AgentClient.connect(a.url, { pinnedKey: a.key, signer: fx.operator });

describe('the agent never loses state', () => {
  it('SIGKILL ten times while guests run: same pids, no restarts, desired state intact', async () => {
    const c = await connect(agent);
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
      await killAgent(agent, 'SIGKILL');
      expect(pids.every((p) => alive(p as number))).toBe(true);
      agent = await startAgent(fx.stateDir, [fx.pubFile]);
    }
    const c2 = await connect(agent);
    const after = await c2.status();
    expect(after.generation).toBe(before.generation);
    expect(after.processes.map((p) => [p.name, p.specDigest, p.pid, p.restarts, p.state])).toEqual(before.processes.map((p) => [p.name, p.specDigest, p.pid, 0, 'running']));
    await c2.stop('sleeper', 1000);
    await c2.stop('hello', 1000);
    c2.close();
  });

  it('killed in the middle of a put-blob: the blob is absent or partial, never corrupt, and the upload resumes', async () => {
    const c = await connect(agent);
    const big = Buffer.alloc(3 * 2 ** 20, 7);
    const digest = sha256Hex(big);
    const chunk = 256 * 1024;
    await c.call({ type: 'put-blob', id: 'p1', digest, size: big.length, offset: 0, data: big.subarray(0, chunk).toString('base64') });
    // The next chunk is on the wire when the agent dies.
    void c.call({ type: 'put-blob', id: 'p2', digest, size: big.length, offset: chunk, data: big.subarray(chunk, 2 * chunk).toString('base64') }).catch(() => undefined);
    await killAgent(agent, 'SIGKILL');
    agent = await startAgent(fx.stateDir, [fx.pubFile]);
    const c2 = await connect(agent);
    const st = await c2.blobStatus([digest]);
    expect(st.present).toEqual([]);
    expect([chunk, 2 * chunk]).toContain(st.partial[digest]);
    await c2.putBlob(digest, big, chunk);
    expect(await c2.blobStatus([digest])).toEqual({ present: [digest], partial: {} });
    expect(sha256Hex(readFileSync(path.join(fx.stateDir, 'blobs', digest)))).toBe(digest);
    c2.close();
  });

  it('killed in the middle of a replace-config: afterwards the old or the new config, never a mix', async () => {
    const c = await connect(agent);
    const spec = await uploadSpec(c, 'cfg', hello, { args: ['/etc/hello.conf', '1'], grants: { disk: 1 << 20, network: { listen: [], connect: [] } } }, { '/etc/hello.conf': 'Old\n' });
    await c.start(spec);
    await c.putBlob(sha256Hex('New\n'), Buffer.from('New\n'));
    const next = { ...spec, config: { '/etc/hello.conf': sha256Hex('New\n') } };
    void c.replaceConfig('cfg', next.config, specDigest(next)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 30));
    await killAgent(agent, 'SIGKILL');
    agent = await startAgent(fx.stateDir, [fx.pubFile]);
    const c2 = await connect(agent);
    const p = (await c2.status()).processes.find((x) => x.name === 'cfg');
    expect([specDigest(spec), specDigest(next)]).toContain(p?.specDigest);
    // The guest that runs is the one the desired state names.
    await waitFor(async () => (await c2.status()).processes.find((x) => x.name === 'cfg')?.state === 'running', 10_000, 'cfg running');
    const running = readFileSync(path.join(fx.stateDir, 'run/cfg/spec-digest'), 'utf8');
    expect(running).toBe(p?.specDigest);
    const expected = p?.specDigest === specDigest(next) ? 'New' : 'Old';
    await waitFor(
      async () => {
        const lines: string[] = [];
        await c2.logs('cfg', { tail: 1 }, (l) => lines.push(l));
        await new Promise((r) => setTimeout(r, 50));
        return lines.at(-1)?.startsWith(expected) === true;
      },
      8000,
      `the guest to log with the ${expected} config`,
    );
    await c2.stop('cfg', 1000);
    c2.close();
  });
});
