import { describe, expect, it } from 'vitest';
import { canonicalJson } from './digest.js';
import { bodyDigest, generateKeyPair, parsePrivateKey, parsePublicKey, privateKeyPem, signBytes, signRequest, verifyBytes, verifyRequest } from './signing.js';

const agent = generateKeyPair().publicKey;
const key = generateKeyPair();

describe('keys', () => {
  it('round-trips a key pair through PEM and the ed25519: form, and rejects what is not one', () => {
    const again = parsePrivateKey(privateKeyPem(key.privateKey));
    expect(again.publicKey).toBe(key.publicKey);
    expect(() => parsePublicKey(key.publicKey)).not.toThrow();
    expect(() => parsePublicKey('ed25519:AAAA', '--trust x')).toThrow(/--trust x: .* is not an ed25519 public key/);
    expect(() => parsePublicKey('ssh-ed25519 AAAA')).toThrow(/not an ed25519 public key/);
    expect(() => parsePrivateKey('not pem', 'ci.key')).toThrow(/ci.key: not an ed25519 private key/);
  });

  it('verifyBytes is false for another key, other bytes or garbage, never throws', () => {
    const sig = signBytes(key.privateKey, 'data');
    expect(verifyBytes(key.publicKey, 'data', sig)).toBe(true);
    expect(verifyBytes(key.publicKey, 'datA', sig)).toBe(false);
    expect(verifyBytes(generateKeyPair().publicKey, 'data', sig)).toBe(false);
    expect(verifyBytes('ed25519:nonsense', 'data', sig)).toBe(false);
    expect(verifyBytes(key.publicKey, 'data', '!!!')).toBe(false);
  });
});

describe('request signatures cover exactly what is acted on', () => {
  const req = { type: 'start', id: 'x', spec: { name: 'p', env: { A: '1' } } };

  it('verifies over this agent, this body, this generation; key order does not matter', () => {
    const auth = signRequest(req, agent, 3, key);
    expect(verifyRequest(req, agent, auth)).toBe(true);
    expect(verifyRequest({ spec: { env: { A: '1' }, name: 'p' }, id: 'x', type: 'start' }, agent, auth)).toBe(true);
    expect(verifyRequest({ ...req, id: 'y' }, agent, auth)).toBe(false);
    expect(verifyRequest(req, generateKeyPair().publicKey, auth)).toBe(false);
    expect(verifyRequest(req, agent, { ...auth, generation: 4 })).toBe(false);
    expect(verifyRequest(req, agent, { ...auth, timestamp: auth.timestamp + 1 })).toBe(false);
    expect(verifyRequest(req, agent, { ...auth, nonce: `${auth.nonce.slice(1)}0` })).toBe(false);
  });

  it('the auth field itself is not part of the body', () => {
    const auth = signRequest(req, agent, 0, key);
    expect(verifyRequest({ ...req, auth }, agent, auth)).toBe(true);
  });

  it('a __proto__ key parsed from JSON is part of the digest (the canonical form keeps every own key)', () => {
    const plain = JSON.parse('{"type":"start","id":"x","spec":{"name":"p","env":{"A":"1"}}}') as object;
    const extended = JSON.parse('{"type":"start","id":"x","spec":{"name":"p","env":{"A":"1","__proto__":"x"}}}') as object;
    expect(bodyDigest(extended)).not.toBe(bodyDigest(plain));
    expect(canonicalJson(extended)).toContain('"__proto__":"x"');
    const auth = signRequest(plain, agent, 0, key);
    expect(verifyRequest(extended, agent, auth)).toBe(false);
  });
});
