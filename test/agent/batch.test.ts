import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { bodyDigest, generateKeyPair, MAX_BATCH_CALLS, sha256Hex, signRequest, type KeyPair, type ProcessSpec } from '@lowcloud/api';
import { verifyAuditLog } from '@lowcloud/node-agent';
import { useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest } from '../helpers/guests.js';
import { rawConnect, type RawWs } from '../helpers/raw-ws.js';

/**
 * `batch`: state-changing calls signed once, each taken as if it had come alone (its own id, its
 * generation the batch's + its place, its own audit line), and refused all together when the one
 * signature, the key, the time or the nonce does not pass.
 */
const fx = useAgentFixture();
const reader = generateKeyPair();
let agent: RunningAgent;
let spec: ProcessSpec;
beforeAll(async () => {
  agent = await fx.start({ args: ['--trust-read', reader.publicKey] });
  const c = await fx.connect(agent);
  spec = await uploadSpec(c, 'b', guest('hello'), { restart: 'never' });
  c.close();
});

type Reply = Awaited<ReturnType<RawWs['next']>>;

/** A raw connection, authenticated with `key`: send anything, read the replies. */
async function raw(key: KeyPair = fx.operator): Promise<RawWs & { send(x: unknown): Promise<Reply>; replies(n: number): Promise<Reply[]> }> {
  const ws = await rawConnect(agent.url);
  onTestFinished(() => void ws.socket.destroy());
  const r = Object.assign(ws, {
    send(x: unknown) {
      ws.sendText(typeof x === 'string' ? x : JSON.stringify(x));
      return ws.next(20_000);
    },
    async replies(n: number) {
      const out: Reply[] = [];
      while (out.length < n) out.push(await ws.next(20_000));
      return out;
    },
  });
  expect((await r.send(signed({ type: 'authenticate', id: 'auth' }, key))).result).toMatchObject({ key: key.publicKey });
  return r;
}

const signed = (req: object, key: KeyPair = fx.operator, generation = 0, now = Date.now()) => ({ ...req, auth: signRequest(req, agent.key, generation, key, now) });
const start = (id: string, name: string, s: ProcessSpec = spec) => ({ type: 'start', id, spec: { ...s, name } });
const batch = (id: string, calls: object[]) => ({ type: 'batch', id, calls });

const metric = async (name: string): Promise<number> => {
  const text = await (await fetch(agent.metricsUrl as string)).text();
  return Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
};
const statusOf = async (r: Awaited<ReturnType<typeof raw>>) => (await r.send(signed({ type: 'status', id: `s${Math.random()}` }))).result as { generation: number; processes: { name: string }[] };
const auditLines = () =>
  readFileSync(path.join(fx.stateDir, 'audit.log'), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; process?: string; generation?: number; body?: string; sig?: string });

describe('batch', () => {
  it('calls signed once are each answered by their own id, made against consecutive generations, each with its own audit line', async () => {
    const r = await raw();
    const g = (await statusOf(r)).generation;
    const calls = [start('c1', 'b1'), start('c2', 'b2'), { type: 'stop', id: 'c3', process: 'b1', graceMs: 1000 }];
    const first = await r.send(signed(batch('B', calls), fx.operator, g));
    // The batch is answered first, once its signature passed; then each call.
    expect(first).toMatchObject({ type: 'result', id: 'B', result: { calls: 3 } });
    const replies = await r.replies(3);
    expect(Object.fromEntries(replies.map((x) => [x.id, x.type === 'result' ? x.result : x.error]))).toEqual({ c1: expect.objectContaining({ changed: true }), c2: expect.objectContaining({ changed: true }), c3: { changed: true } });
    expect((await statusOf(r)).generation).toBe(g + 3);
    // Each call's line names its own body (what a single call of the same content would record).
    const lines = auditLines().filter((l) => ['start', 'stop'].includes(l.type) && (l.generation ?? -1) >= g);
    expect(lines.map((l) => [l.type, l.process, l.generation, l.body])).toEqual(calls.map((c, i) => [c.type, 'spec' in c ? c.spec.name : c.process, g + i, bodyDigest(c)]));
    expect(verifyAuditLog(path.join(fx.stateDir, 'audit.log'))).toMatchObject({ ok: true });
    expect(await metric('lowcloud_agent_calls_total{type="batch",result="ok"}')).toBeGreaterThanOrEqual(1);
  });

  it('a call that fails refuses the ones after it (they meet another generation), as when each comes alone; those before it stand', async () => {
    const r = await raw();
    const g = (await statusOf(r)).generation;
    const missing = { ...spec, binary: sha256Hex('not uploaded') };
    expect((await r.send(signed(batch('B2', [start('d1', 'd1'), start('d2', 'd2', missing), start('d3', 'd3')]), fx.operator, g))).type).toBe('result');
    const byId = Object.fromEntries((await r.replies(3)).map((x) => [x.id, x]));
    expect(byId.d1).toMatchObject({ type: 'result' });
    expect(byId.d2?.error?.code).toBe('BLOB_MISSING');
    expect(byId.d3?.error?.code).toBe('STALE_GENERATION');
    expect((await statusOf(r)).generation).toBe(g + 1);
  });

  it('refused whole, nothing changed, when its one signature does not cover a call, the key may only read, the time is off, the nonce was seen, or the generation is stale', async () => {
    const r = await raw();
    const g = (await statusOf(r)).generation;
    const names = () => JSON.stringify(auditLines().length);
    const before = names();
    const calls = [start('e1', 'e1'), start('e2', 'e2')];
    // Signed over two calls, sent with the second changed.
    const good = signed(batch('T', calls), fx.operator, g);
    const tampered = { ...good, calls: [calls[0], { ...start('e2', 'e2'), spec: { ...spec, name: 'e2', args: ['--evil'] } }] };
    expect((await r.send(tampered)).error).toMatchObject({ code: 'BAD_SIGNATURE' });
    // A call added to a signed batch, or one taken out.
    expect((await r.send({ ...good, calls: [...calls, start('e3', 'e3')] })).error?.code).toBe('BAD_SIGNATURE');
    expect((await r.send({ ...good, calls: [calls[0]] })).error?.code).toBe('BAD_SIGNATURE');
    expect((await r.send(signed(batch('T2', calls), fx.operator, g, Date.now() - 10 * 60_000))).error?.code).toBe('EXPIRED');
    const rr = await raw(reader);
    expect((await rr.send(signed(batch('T3', calls), reader, g))).error?.code).toBe('FORBIDDEN');
    expect((await r.send(signed(batch('T4', calls), generateKeyPair(), g))).error?.code).toBe('UNKNOWN_KEY');
    // A stale generation refuses each call (the batch passed; each call is checked as it is taken).
    expect((await r.send(signed(batch('T5', calls), fx.operator, g + 7))).type).toBe('result');
    expect((await r.replies(2)).map((x) => x.error?.code)).toEqual(['STALE_GENERATION', 'STALE_GENERATION']);
    expect(await statusOf(r)).toMatchObject({ generation: g, processes: expect.not.arrayContaining([expect.objectContaining({ name: 'e1' })]) });
    expect(names()).toBe(before);
    // Once, then replayed.
    const once = signed(batch('T6', calls), fx.operator, g);
    expect((await r.send(once)).type).toBe('result');
    await r.replies(2);
    expect((await r.send(once)).error?.code).toBe('REPLAYED');
    expect((await statusOf(r)).generation).toBe(g + 2);
  });

  it('takes only state-changing calls, each without a signature of its own, each id once, at most MAX_BATCH_CALLS', async () => {
    const r = await raw();
    const g = (await statusOf(r)).generation;
    const bad = async (calls: unknown, path: string) => {
      const reply = await r.send(signed({ type: 'batch', id: 'X', calls }, fx.operator, g));
      expect(reply.error, path).toMatchObject({ code: 'BAD_MESSAGE', details: { path } });
    };
    await bad([{ type: 'status', id: 's' }], 'calls.0.type');
    await bad([{ type: 'put-blob', id: 'p', digest: sha256Hex('x'), size: 1, offset: 0, data: 'eA==' }], 'calls.0.type');
    await bad([batch('inner', [start('i', 'i')])], 'calls.0.type');
    await bad([start('a', 'a'), { ...signed(start('b', 'b')) }], 'calls.1.auth');
    await bad([start('a', 'a'), start('a', 'b')], 'calls.1.id');
    await bad([start('X', 'a')], 'calls.0.id');
    await bad([], 'calls');
    await bad(Array.from({ length: MAX_BATCH_CALLS + 1 }, (_, i) => ({ type: 'stop', id: `s${i}`, process: `p${i}` })), 'calls');
    expect((await statusOf(r)).generation).toBe(g);
  });

  it("the client sends the calls made together as batches, and an agent's hello says how many it takes", async () => {
    const c = await fx.connect(agent, { timeoutMs: 60_000, window: 1024 });
    onTestFinished(() => c.close());
    const batches = await metric('lowcloud_agent_calls_total{type="batch",result="ok"}');
    const names = Array.from({ length: 40 }, (_, i) => `f${i}`);
    expect((await Promise.all(names.map((n) => c.start({ ...spec, name: n, isolation: 'shared' })))).every((x) => x.changed)).toBe(true);
    expect((await Promise.all(names.map((n) => c.stop(n, 1000)))).every((x) => x.changed)).toBe(true);
    const sent = (await metric('lowcloud_agent_calls_total{type="batch",result="ok"}')) - batches;
    expect(sent).toBeGreaterThanOrEqual(2);
    expect(sent).toBeLessThanOrEqual(8);
    const ws = await rawConnect(agent.url);
    onTestFinished(() => void ws.socket.destroy());
    ws.sendText(JSON.stringify({ type: 'hello', id: 'h', challenge: 'c'.repeat(32) }));
    expect(await ws.next()).toMatchObject({ type: 'hello', batch: MAX_BATCH_CALLS });
  });
});
