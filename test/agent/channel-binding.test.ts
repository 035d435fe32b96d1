import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '@lowcloud/api/client';
import { useAgentFixture, type RunningAgent } from '../helpers/agent.js';

// Finding of issue 10: the hello proof was bound to the sha256 of the agent's fixed certificate, so
// whoever held tls.key could terminate TLS, relay the client's challenge to the real agent and pass
// as it. The proof now signs keying material exported from the TLS session (RFC 9266 tls-exporter).

const fx = useAgentFixture();
let agent: RunningAgent;
const servers: net.Server[] = [];
beforeAll(async () => {
  agent = await fx.start({ tls: true });
});
afterAll(async () => {
  for (const s of servers) s.close();
});

const agentPort = () => Number(new URL(agent.url).port);

function listen(server: net.Server): Promise<number> {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

describe('channel binding: the agent proves its key on this TLS session', () => {
  it('a relay that terminates TLS with the stolen tls.key and certificate is refused by the client', async () => {
    const stolen = { key: readFileSync(path.join(fx.stateDir, 'tls.key')), cert: readFileSync(path.join(fx.stateDir, 'tls.crt')) };
    let relayed = 0;
    const relay = tls.createServer(stolen, (fromClient) => {
      const toAgent = tls.connect({ host: '127.0.0.1', port: agentPort(), rejectUnauthorized: false });
      fromClient.on('error', () => toAgent.destroy());
      toAgent.on('error', () => fromClient.destroy());
      fromClient.on('data', (d: Buffer) => (relayed += d.length));
      fromClient.pipe(toAgent).pipe(fromClient);
    });
    const port = await listen(relay);
    // The relay presents the agent's own certificate: what the old proof was bound to.
    const seen = await new Promise<Buffer>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => (resolve(s.getPeerCertificate().raw), s.end()));
      s.on('error', reject);
    });
    expect(seen.equals(new X509Certificate(stolen.cert).raw)).toBe(true);
    await expect(AgentClient.connect(`wss://127.0.0.1:${port}`, { pinnedKey: agent.key, signer: fx.operator, timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'AGENT_KEY_MISMATCH',
      message: expect.stringContaining('tls-exporter'),
    });
    // The challenge really went through the relay to the agent (the refusal is the binding's, not a broken relay's).
    expect(relayed).toBeGreaterThan(100);
  });

  it('a byte-level forwarder (no TLS termination) in between still works: the session is end to end', async () => {
    const forward = net.createServer((c) => {
      const up = net.connect(agentPort(), '127.0.0.1');
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
      c.pipe(up).pipe(c);
    });
    const port = await listen(forward);
    const c = await AgentClient.connect(`wss://127.0.0.1:${port}`, { pinnedKey: agent.key, signer: fx.operator });
    expect((await c.status()).agent).toBe(agent.key);
    c.close();
  });
});
