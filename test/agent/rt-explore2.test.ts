import net from 'node:net';
import tls from 'node:tls';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, it } from 'vitest';
import { generateKeyPair, signRequest } from '@lowcloud/api';
import { AgentClient } from '@lowcloud/api/client';
import { agentFixture, killAgent, startAgent, type RunningAgent } from '../helpers/agent.js';
import { rawConnect, rssBytes } from '../helpers/raw-ws.js';

const fx = agentFixture();
const reader = generateKeyPair();
let agent: RunningAgent;
beforeAll(async () => {
  const readPub = path.join(fx.dir, 'ops.pub');
  writeFileSync(readPub, `${reader.publicKey}\n`);
  agent = await startAgent(fx.stateDir, [fx.pubFile], { tls: true, args: ['--trust-read', readPub] });
});
afterAll(async () => { await killAgent(agent); fx.remove(); });

it('explore tls', async () => {
  const log = (...a: unknown[]) => console.log(...a);
  const port = Number(new URL(agent.url).port);
  const op = async () => {
    const t0 = Date.now();
    try {
      const c = await AgentClient.connect(agent.url, { pinnedKey: agent.key, signer: fx.operator, timeoutMs: 3000 });
      await c.status(); c.close(); return `ok ${Date.now() - t0} ms`;
    } catch (e) { return `FAIL ${String(e).slice(0, 120)}`; }
  };
  log('baseline', await op());
  // garbage instead of ClientHello
  for (const g of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.alloc(5000, 0x16), Buffer.from('1603010200', 'hex')]) {
    await new Promise<void>((r) => { const s = net.connect(port, '127.0.0.1', () => s.write(g)); s.on('error', () => undefined); s.on('close', () => r()); setTimeout(() => { s.destroy(); r(); }, 1500); });
  }
  log('after garbage', await op());
  // slowloris: 16 addresses x 16 half-open TCP
  const socks: net.Socket[] = [];
  for (let a = 2; a < 18; a++) for (let i = 0; i < 16; i++) {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${a}` }); s.on('error', () => undefined); socks.push(s);
  }
  await new Promise((r) => setTimeout(r, 500));
  log('open', socks.filter((s) => !s.destroyed).length, 'operator during slowloris:', await op());
  for (const s of socks) s.destroy();
  await new Promise((r) => setTimeout(r, 300));
  log('after slowloris', await op());
  // TLS handshake flood: 200 full handshakes sequentially, timing
  const t0 = Date.now();
  for (let i = 0; i < 200; i++) await new Promise<void>((r) => { const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => { s.destroy(); r(); }); s.on('error', () => r()); });
  log('200 handshakes ms', Date.now() - t0, 'rss', rssBytes(agent.pid) >> 20);
  // renegotiation attempt (TLS1.3 min)
  const r = await new Promise<string>((res) => { const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () => res('connected 1.2!')); s.on('error', (e) => res(`1.2 refused: ${e.message.slice(0, 80)}`)); });
  log(r);
  // replay of a signed status across connections
  const ws1 = await rawConnect(agent.url);
  const req = { type: 'status', id: randomUUID() };
  const msg = JSON.stringify({ ...req, auth: signRequest(req, agent.key, 0, reader) });
  ws1.sendText(msg); log('first', (await ws1.next()).type);
  const ws2 = await rawConnect(agent.url);
  ws2.sendText(msg); log('replay other conn', JSON.stringify((await ws2.next()).error));
  ws1.socket.destroy(); ws2.socket.destroy();
  log('end', await op());
}, 120_000);
