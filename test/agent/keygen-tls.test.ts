import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { parsePrivateKey, parsePublicKey } from '@lowcloud/api';
import { runCli } from '../helpers/cli.js';
import { useAgentFixture } from '../helpers/agent.js';

// `lowcloud keygen` as docs/agents.md's first step gives it, and the agent's TLS listener.
// The fixture's own operator key is not used: the agent trusts only the key keygen makes.
const fx = useAgentFixture();

describe('lowcloud keygen and the agent that trusts its key', () => {
  it('writes NAME.key (0600) and NAME.pub; an agent given the .pub answers calls signed with the .key; TLS 1.3 only; the agent\'s own keys 0600', async () => {
    const out = path.join(fx.dir, 'made-by-keygen');
    const r = await runCli(['keygen', '--out', out]);
    expect(r.code).toBe(0);
    expect(statSync(`${out}.key`).mode & 0o777).toBe(0o600);
    const pub = readFileSync(`${out}.pub`, 'utf8').trim();
    parsePublicKey(pub); // an ed25519:... key
    expect(r.stdout).toBe(`${pub}\nwrote ${out}.key (keep it secret) and ${out}.pub\n`);
    const signer = parsePrivateKey(readFileSync(`${out}.key`, 'utf8'));
    expect(signer.publicKey).toBe(pub);

    // Never over an existing key.
    const again = await runCli(['keygen', '--out', out]);
    expect(again).toMatchObject({ code: 1, stderr: `error: ${out}.key already exists; refusing to overwrite a key\n` });
    expect(parsePrivateKey(readFileSync(`${out}.key`, 'utf8')).publicKey).toBe(pub);

    const agent = await fx.start({ trust: [`${out}.pub`], tls: true });
    const c = await fx.connect(agent, { signer });
    expect((await c.status()).agent).toBe(agent.key);
    c.close();
    for (const f of ['agent.key', 'tls.key', 'audit.log', 'audit.head']) expect(statSync(path.join(fx.stateDir, f)).mode & 0o777, f).toBe(0o600);

    // A client that offers at most TLS 1.2 gets no session.
    const port = Number(new URL(agent.url).port);
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () => resolve(`connected with ${s.getProtocol() ?? '?'}`));
      s.on('error', (err) => resolve(`refused: ${err.message}`));
    });
    expect(outcome).toMatch(/^refused: .*(protocol version|alert)/i);
  });
});
