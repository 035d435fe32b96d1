import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { generateKeyPair, sha256Hex, signRequest } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { agentFixture, killAgent, startAgent, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest } from '../helpers/guests.js';

const fx = agentFixture();
let agent: RunningAgent;
let tlsAgent: RunningAgent;
beforeAll(async () => {
  agent = await startAgent(fx.stateDir, [fx.pubFile]);
  tlsAgent = await startAgent(`${fx.stateDir}-tls`, [fx.pubFile], { tls: true });
});
afterAll(async () => {
  await killAgent(agent);
  await killAgent(tlsAgent);
  fx.remove();
});

/** A raw connection: send anything, read the next reply. */
async function raw(url: string): Promise<{ send(x: unknown): Promise<{ type: string; error?: { code: string; message: string; details?: Record<string, unknown> }; result?: unknown; generation?: number }>; ws: WebSocket }> {
  const ws = new WebSocket(url, { rejectUnauthorized: false });
  await new Promise((r) => ws.once('open', r));
  return {
    ws,
    send(x) {
      return new Promise((resolve) => {
        ws.once('message', (d) => resolve(JSON.parse(String(d))));
        ws.send(typeof x === 'string' || Buffer.isBuffer(x) ? x : JSON.stringify(x));
      });
    },
  };
}

describe('the agent rejects every bad request with its own code and keeps serving', () => {
  it('each attack gets its error code; the same connection and other clients keep working', async () => {
    const good = await AgentClient.connect(agent.url, { pinnedKey: agent.key, signer: fx.operator });
    const spec = await uploadSpec(good, 'sleeper', guest('sleeper'));
    const gen = good.generation;
    const r = await raw(agent.url);
    const start = (id: string) => ({ type: 'start', id, spec });
    const signed = (req: object, key = fx.operator, generation = gen, now = Date.now()) => ({ ...req, auth: signRequest(req, agent.key, generation, key, now) });

    expect((await r.send(start('a'))).error?.code).toBe('UNAUTHENTICATED');
    expect((await r.send(signed(start('b'), generateKeyPair()))).error?.code).toBe('UNKNOWN_KEY');
    // Signed over one spec, sent with another.
    const tampered = { ...signed(start('c')), spec: { ...spec, args: ['--evil'] } };
    expect((await r.send(tampered)).error?.code).toBe('BAD_SIGNATURE');
    expect((await r.send(signed(start('d'), fx.operator, gen, Date.now() - 10 * 60_000))).error?.code).toBe('EXPIRED');
    expect((await r.send(signed(start('e'), fx.operator, gen + 5))).error).toMatchObject({ code: 'STALE_GENERATION', details: { expected: gen, got: gen + 5 } });
    const once = signed(start('f'));
    expect((await r.send(once)).type).toBe('result');
    expect((await r.send(once)).error?.code).toBe('REPLAYED');
    expect((await r.send('{"type": "status", "id": ')).error?.code).toBe('BAD_MESSAGE');
    expect((await r.send({ type: 'status', id: 'x', extra: 1 })).error).toMatchObject({ code: 'BAD_MESSAGE', details: { path: 'extra' } });
    expect((await r.send({ type: 'stop', id: 'y', process: 'Not A Name!' })).error).toMatchObject({ code: 'BAD_MESSAGE', details: { path: 'process' } });
    expect((await r.send('x'.repeat(3 * 2 ** 20))).error?.code).toBe('FRAME_TOO_LARGE');
    const wrong = Buffer.from('not what the digest says');
    expect((await r.send(signed({ type: 'put-blob', id: 'z', digest: sha256Hex('something else'), size: wrong.length, offset: 0, data: wrong.toString('base64') }))).error?.code).toBe('DIGEST_MISMATCH');
    expect((await r.send(signed({ type: 'start', id: 'm', spec: { ...spec, name: 'other', binary: sha256Hex('missing') } }, fx.operator, gen + 1))).error?.code).toBe('BLOB_MISSING');

    // Still serving: this connection and the other client.
    expect((await r.send({ type: 'status', id: 's' })).type).toBe('result');
    const st = await good.status();
    expect(st.processes.map((p) => p.name)).toEqual(['sleeper']);
    await good.stop('sleeper', 1000);
    r.ws.close();
    good.close();
  });

  it('idempotent: starting what runs and stopping what does not are no-op successes', async () => {
    const c = await AgentClient.connect(agent.url, { pinnedKey: agent.key, signer: fx.operator });
    const spec = await uploadSpec(c, 'idem', guest('sleeper'));
    expect(await c.start(spec)).toMatchObject({ changed: true });
    const g = c.generation;
    expect(await c.start(spec)).toEqual({ changed: false });
    expect(c.generation).toBe(g);
    expect(await c.stop('idem', 1000)).toEqual({ changed: true });
    expect(await c.stop('idem', 1000)).toEqual({ changed: false });
    c.close();
  });

  it('over TLS the client trusts only the pinned key, proven on this connection', async () => {
    expect(tlsAgent.url.startsWith('wss://')).toBe(true);
    const ok = await AgentClient.connect(tlsAgent.url, { pinnedKey: tlsAgent.key });
    expect((await ok.status()).agent).toBe(tlsAgent.key);
    ok.close();
    await expect(AgentClient.connect(tlsAgent.url, { pinnedKey: generateKeyPair().publicKey })).rejects.toMatchObject({ code: 'AGENT_KEY_MISMATCH' });
  });
});
