import http from 'node:http';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { generateKeyPair, sha256Hex, signRequest, type KeyPair } from '@lowcloud/api';
import { requestSchema } from '@lowcloud/api/requests';
import { AgentClient } from '@lowcloud/api/client';
import { expectServes, useAgentFixture, uploadSpec, type RunningAgent } from '../helpers/agent.js';
import { guest } from '../helpers/guests.js';
import { rawConnect, type RawWs } from '../helpers/raw-ws.js';

const fx = useAgentFixture();
const reader = generateKeyPair();
let agent: RunningAgent;
let tlsAgent: RunningAgent;
beforeAll(async () => {
  agent = await fx.start({ args: ['--trust-read', reader.publicKey, '--allow-origin', 'https://ops.example'] });
  tlsAgent = await fx.start({ stateDir: `${fx.stateDir}-tls`, tls: true });
});

/** A raw connection: send anything, read the next reply. */
async function raw(url = agent.url): Promise<RawWs & { send(x: unknown): ReturnType<RawWs['next']> }> {
  const ws = await rawConnect(url);
  onTestFinished(() => void ws.socket.destroy());
  return Object.assign(ws, {
    send(x: unknown) {
      ws.sendText(typeof x === 'string' ? x : JSON.stringify(x));
      return ws.next();
    },
  });
}

const signed = (req: object, key: KeyPair = fx.operator, generation = 0, now = Date.now()) => ({ ...req, auth: signRequest(req, agent.key, generation, key, now) });

describe('the agent rejects every bad request with its own code and keeps serving', () => {
  it('each attack gets its error code; the same connection and other clients keep working', async () => {
    const good = await fx.connect(agent);
    const spec = await uploadSpec(good, 'sleeper', guest('sleeper'));
    const gen = good.generation;
    const r = await raw();
    const start = (id: string) => ({ type: 'start', id, spec });

    expect((await r.send(start('a'))).error?.code).toBe('UNAUTHENTICATED');
    expect((await r.send(signed(start('b'), generateKeyPair()))).error?.code).toBe('UNKNOWN_KEY');
    expect((await r.send(signed({ type: 'authenticate', id: 'auth' }))).result).toEqual({ key: fx.operator.publicKey, role: 'write' });
    // Signed over one spec, sent with another.
    const tampered = { ...signed(start('c'), fx.operator, gen), spec: { ...spec, args: ['--evil'] } };
    expect((await r.send(tampered)).error?.code).toBe('BAD_SIGNATURE');
    expect((await r.send(signed(start('d'), fx.operator, gen, Date.now() - 10 * 60_000))).error?.code).toBe('EXPIRED');
    expect((await r.send(signed(start('e'), fx.operator, gen + 5))).error).toMatchObject({ code: 'STALE_GENERATION', details: { expected: gen, got: gen + 5 } });
    const once = signed(start('f'), fx.operator, gen);
    expect((await r.send(once)).type).toBe('result');
    expect((await r.send(once)).error?.code).toBe('REPLAYED');
    expect((await r.send('{"type": "status", "id": ')).error?.code).toBe('BAD_MESSAGE');
    expect((await r.send({ type: 'status', id: 'x', extra: 1 })).error).toMatchObject({ code: 'BAD_MESSAGE', details: { path: 'extra' } });
    expect((await r.send({ type: 'stop', id: 'y', process: 'Not A Name!' })).error).toMatchObject({ code: 'BAD_MESSAGE', details: { path: 'process' } });
    expect((await r.send('x'.repeat(13 * 2 ** 20))).error?.code).toBe('FRAME_TOO_LARGE');
    const wrong = Buffer.from('not what the digest says');
    expect((await r.send(signed({ type: 'put-blob', id: 'z', digest: sha256Hex('something else'), size: wrong.length, offset: 0, data: wrong.toString('base64') }))).error?.code).toBe('DIGEST_MISMATCH');
    expect((await r.send(signed({ type: 'start', id: 'm', spec: { ...spec, name: 'other', binary: sha256Hex('missing') } }, fx.operator, gen + 1))).error?.code).toBe('BLOB_MISSING');

    // Still serving: this connection and the other client.
    expect((await r.send(signed({ type: 'status', id: 's' }))).type).toBe('result');
    const st = await good.status();
    expect(st.processes.map((p) => p.name)).toEqual(['sleeper']);
    await good.stop('sleeper', 1000);
    good.close();
  });

  it('idempotent: starting what runs and stopping what does not are no-op successes', async () => {
    const c = await fx.connect(agent);
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
    const ok = await fx.connect(tlsAgent);
    expect((await ok.status()).agent).toBe(tlsAgent.key);
    ok.close();
    await expect(AgentClient.connect(tlsAgent.url, { pinnedKey: generateKeyPair().publicKey })).rejects.toMatchObject({ code: 'AGENT_KEY_MISMATCH' });
  });
});

/** Every field path a schema names (`spec.grants.memory`), into nested objects. */
function schemaFields(schema: Record<string, unknown>, prefix = ''): string[] {
  const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
  return Object.entries(props).flatMap(([k, sub]) => [`${prefix}${k}`, ...schemaFields(sub, `${prefix}${k}.`)]);
}

/** Every path in a JSON value, objects and arrays (`spec.args.0`). */
function valueFields(v: unknown, prefix = ''): string[] {
  if (v === null || typeof v !== 'object') return [];
  return Object.entries(v).flatMap(([k, sub]) => [`${prefix}${k}`, ...valueFields(sub, `${prefix}${k}.`)]);
}

function withNullAt(v: unknown, path: string): unknown {
  const copy = structuredClone(v) as Record<string, unknown>;
  const parts = path.split('.');
  let o = copy;
  for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[parts.at(-1) as string] = null;
  return copy;
}

describe('null is refused wherever a value is required (issue 17)', () => {
  it('every field of every request type, set to null, gets BAD_MESSAGE naming it; the agent keeps serving', async () => {
    const auth = { key: fx.operator.publicKey, generation: 0, timestamp: Date.now(), nonce: 'n'.repeat(16), signature: 's' };
    const hex = 'a'.repeat(64);
    const spec = {
      name: 'p', binary: hex, args: ['x'], env: { A: '1' }, config: { '/etc/x': hex }, restart: 'always', isolation: 'process', allowUnwalled: true,
      grants: { cpu: 1, memory: 2 ** 20, disk: 2 ** 20, gpu: { memory: 1, submitSeconds: 1 }, network: { listen: [80], connect: ['db:1'], udp: true } },
    };
    const samples = [
      { type: 'hello', id: '1', challenge: 'c'.repeat(16) },
      { type: 'authenticate', id: '1', auth },
      { type: 'status', id: '1', auth },
      { type: 'start', id: '1', spec, auth },
      { type: 'stop', id: '1', process: 'p', graceMs: 1, auth },
      { type: 'replace-config', id: '1', process: 'p', config: { '/x': hex }, specDigest: hex, auth },
      { type: 'batch', id: '1', calls: [{ type: 'start', id: '2', spec }, { type: 'stop', id: '3', process: 'p', graceMs: 1 }, { type: 'replace-config', id: '4', process: 'p', config: { '/x': hex }, specDigest: hex }], auth },
      { type: 'blob-status', id: '1', digests: [hex], auth },
      { type: 'put-blob', id: '1', digest: hex, size: 1, offset: 0, data: 'eA==', chunk: { bytes: 1, sha256: hex }, auth },
      { type: 'logs', id: '1', process: 'p', tail: 1, follow: true, auth },
      { type: 'watch', id: '1', auth },
    ];
    // The samples hold every field the schema names: a field added later is walked too.
    const branches = (requestSchema as { oneOf: Record<string, unknown>[] }).oneOf;
    expect(branches.map((b) => ((b.properties as { type: { const: string } }).type.const))).toEqual(samples.map((s) => s.type));
    branches.forEach((b, i) => expect(valueFields(samples[i]), samples[i]?.type).toEqual(expect.arrayContaining(schemaFields(b))));

    const r = await raw();
    expect((await r.send(signed({ type: 'authenticate', id: 'auth' }))).result).toMatchObject({ role: 'write' });
    let sent = 0;
    for (const sample of samples) {
      for (const field of valueFields(sample)) {
        const reply = await r.send(withNullAt(sample, field));
        expect(reply.error, `${sample.type} ${field}`).toMatchObject({ code: 'BAD_MESSAGE', details: { path: field } });
        expect(reply.error?.message, `${sample.type} ${field}`).toContain('null is not a value here');
        sent++;
      }
    }
    expect(sent).toBeGreaterThan(50);
    await expectServes(agent, fx.operator);
  });
});

describe('nothing is read without a trusted key (issue 10 findings)', () => {
  it('status, logs, blob-status and watch need a signature; anonymous callers get only the hello proof', async () => {
    const c = await fx.connect(agent);
    const spec = await uploadSpec(c, 'secretive', guest('sleeper'), { env: { DB_PASSWORD: 'hunter2-secret' } });
    await c.start(spec);
    onTestFinished(async () => void (await c.stop('secretive', 1000), c.close()));
    const r = await raw();
    expect((await r.send({ type: 'hello', id: 'h', challenge: 'c'.repeat(32) })).type).toBe('hello');
    for (const req of [{ type: 'status', id: '1' }, { type: 'logs', id: '2', process: 'secretive' }, { type: 'blob-status', id: '3', digests: [spec.binary] }, { type: 'watch', id: '4' }]) {
      const reply = await r.send(req);
      expect(reply.error?.code, req.type).toBe('UNAUTHENTICATED');
    }
    expect((await r.send(signed({ type: 'status', id: '5' }, generateKeyPair()))).error?.code).toBe('UNKNOWN_KEY');
    // The anonymous client without a signer gets a clear error from the client itself.
    const anon = await AgentClient.connect(agent.url, { pinnedKey: agent.key });
    await expect(anon.status()).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    anon.close();
  });

  it('a --trust-read key reads but cannot change anything (FORBIDDEN)', async () => {
    const ro = await fx.connect(agent, { signer: reader });
    onTestFinished(() => ro.close());
    expect(ro.role).toBe('read');
    expect((await ro.status()).agent).toBe(agent.key);
    await expect(ro.stop('anything')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(ro.putBlob(sha256Hex('x'), Buffer.from('x'))).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('status never carries env values: keys and a sha256 per value', async () => {
    const c = await fx.connect(agent);
    onTestFinished(() => c.close());
    const spec = await uploadSpec(c, 'envy', guest('sleeper'), { env: { DB_PASSWORD: 'hunter2-secret', LOG: 'info' } });
    await c.start(spec);
    onTestFinished(async () => void (await c.stop('envy', 1000)));
    const r = await raw();
    const reply = await r.send(signed({ type: 'status', id: 'st' }, reader));
    expect(JSON.stringify(reply)).not.toContain('hunter2-secret');
    const p = (reply.result as { processes: { name: string; spec: Record<string, unknown> }[] }).processes.find((x) => x.name === 'envy');
    expect(p?.spec.env).toBeUndefined();
    expect(p?.spec.envDigests).toEqual({ DB_PASSWORD: sha256Hex('hunter2-secret'), LOG: sha256Hex('info') });
  });

  it('/metrics is not on the API port; it is on its own loopback listener', async () => {
    const get = (url: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) =>
        http.get(url, (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        }).on('error', reject),
      );
    const onApi = await get(`http://127.0.0.1:${new URL(agent.url).port}/metrics`);
    expect(onApi.status).toBe(404);
    expect(onApi.body).not.toContain('lowcloud_');
    expect(agent.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect((await get(agent.metricsUrl as string)).body).toContain('lowcloud_agent_uptime_seconds');
    // A page that rebinds its name to 127.0.0.1 sends its own name as Host: refused.
    const rebound = await new Promise<number>((resolve, reject) => http.get(agent.metricsUrl as string, { headers: { host: 'evil.example:9464' } }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject));
    expect(rebound).toBe(403);
  });
});

describe('browsers and signatures (issue 10 findings)', () => {
  it('a WebSocket upgrade with an Origin header is refused (403) unless --allow-origin allows it', async () => {
    await expect(rawConnect(agent.url, { Origin: 'https://evil.example' })).rejects.toThrow(/^HTTP\/1\.1 403/);
    await expect(AgentClient.connect(agent.url, { origin: 'https://evil.example', signer: fx.operator })).rejects.toMatchObject({ code: 'AGENT_UNREACHABLE', message: expect.stringContaining('403') });
    const allowed = await fx.connect(agent, { origin: 'https://ops.example' });
    expect((await allowed.status()).agent).toBe(agent.key);
    allowed.close();
  });

  it('a signed start with an extra __proto__ env key is refused at the schema; nothing is stored', async () => {
    const c = await fx.connect(agent);
    onTestFinished(() => c.close());
    const spec = await uploadSpec(c, 'protokey', guest('sleeper'), { env: { A: '1' } });
    const body = signed({ type: 'start', id: 'p', spec }, fx.operator, c.generation);
    // The attacker adds a key the canonical form used to drop; JSON.parse keeps it as an own key.
    const text = JSON.stringify(body).replace('"env":{"A":"1"}', '"env":{"A":"1","__proto__":"x"}');
    expect(text).toContain('__proto__');
    const r = await raw();
    expect((await r.send(signed({ type: 'authenticate', id: 'a' }))).type).toBe('result');
    expect((await r.send(text)).error).toMatchObject({ code: 'BAD_MESSAGE', details: { path: 'spec.env.__proto__' } });
    expect((await c.status()).processes.map((p) => p.name)).not.toContain('protokey');
  });
});
