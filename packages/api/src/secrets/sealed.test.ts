import { createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../signing.js';
import { isSealed, MAX_SECRET_BYTES, openSealed, parseSealed, sealValue } from './sealed.js';

const machine = generateKeyPair();
const other = generateKeyPair();
const plain = new TextEncoder().encode('hunter2-correct-horse');

/** Flip one bit of the decoded body at `at` (negative: from the end) and re-encode. */
function tamper(text: string, at: number): string {
  const body = Buffer.from(text.slice('sealed:v1:'.length), 'base64url');
  const i = at < 0 ? body.length + at : at;
  body[i] = (body[i] as number) ^ 1;
  return `sealed:v1:${body.toString('base64url')}`;
}

const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    return (err as { code: string }).code;
  }
  return 'no error';
};

describe('sealed values', () => {
  it('round-trips to the machine it is sealed to, and each seal is different', () => {
    const a = sealValue(plain, machine.publicKey);
    const b = sealValue(plain, machine.publicKey);
    expect(a).toMatch(/^sealed:v1:[A-Za-z0-9_-]+$/);
    expect(a).not.toBe(b);
    expect(isSealed(a)).toBe(true);
    expect(parseSealed(`${a}\n`).recipient).toBe(machine.publicKey);
    expect(Buffer.from(openSealed(a, machine)).toString()).toBe('hunter2-correct-horse');
    expect(Buffer.from(openSealed(b, machine)).toString()).toBe('hunter2-correct-horse');
    expect(openSealed(sealValue(new Uint8Array(0), machine.publicKey), machine)).toHaveLength(0);
  });

  it('is exactly the construction its doc comment states (opened with node:crypto alone)', () => {
    const text = sealValue(plain, machine.publicKey);
    const body = Buffer.from(text.slice('sealed:v1:'.length), 'base64url');
    const [a, e, c] = [body.subarray(0, 32), body.subarray(32, 64), body.subarray(64)];
    const seed = Buffer.from(machine.privateKey.export({ format: 'jwk' }).d as string, 'base64url');
    const x = Buffer.from(ed25519.utils.toMontgomerySecret(seed)).toString('base64url');
    const ss = diffieHellman({
      privateKey: createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: x, x: Buffer.from(ed25519.utils.toMontgomery(a)).toString('base64url') }, format: 'jwk' }),
      publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: e.toString('base64url') }, format: 'jwk' }),
    });
    const k = Buffer.from(hkdfSync('sha256', ss, Buffer.concat([e, a]), 'lowcloud sealed:v1', 32));
    const d = createDecipheriv('chacha20-poly1305', k, Buffer.alloc(12), { authTagLength: 16 });
    d.setAAD(Buffer.concat([Buffer.from('sealed:v1:'), a, e]), { plaintextLength: c.length - 16 });
    d.setAuthTag(c.subarray(c.length - 16));
    expect(Buffer.concat([d.update(c.subarray(0, c.length - 16)), d.final()]).toString()).toBe('hunter2-correct-horse');
  });

  it('another machine cannot open it: wrong machine by the recipient, and by the key itself', () => {
    const text = sealValue(plain, machine.publicKey);
    expect(codeOf(() => openSealed(text, other))).toBe('SECRET_WRONG_MACHINE');
    // A value re-addressed to the other machine (recipient bytes swapped) still does not open there.
    const body = Buffer.from(text.slice('sealed:v1:'.length), 'base64url');
    Buffer.from(other.publicKey.slice(8), 'base64').copy(body, 0);
    expect(codeOf(() => openSealed(`sealed:v1:${body.toString('base64url')}`, other))).toBe('SECRET_DOES_NOT_OPEN');
  });

  it('a changed ciphertext, tag or ephemeral key does not open; the message never holds the plaintext', () => {
    const text = sealValue(plain, machine.publicKey);
    for (const at of [40, 64, -1]) {
      expect(codeOf(() => openSealed(tamper(text, at), machine))).toBe('SECRET_DOES_NOT_OPEN');
    }
    expect(codeOf(() => openSealed(text.slice(0, -4), machine))).toBe('SECRET_DOES_NOT_OPEN');
    try {
      openSealed(tamper(text, -1), machine);
    } catch (err) {
      expect(JSON.stringify(err) + String(err)).not.toContain('hunter2');
    }
  });

  it('an unknown version and malformed strings are refused with their codes, without a key', () => {
    expect(codeOf(() => parseSealed('sealed:v2:AAAA'))).toBe('SECRET_UNKNOWN_VERSION');
    expect(codeOf(() => parseSealed('sealed:AAAA'))).toBe('SECRET_MALFORMED');
    expect(codeOf(() => parseSealed('sealed:v1:not base64!'))).toBe('SECRET_MALFORMED');
    expect(codeOf(() => parseSealed('sealed:v1:AAAA'))).toBe('SECRET_MALFORMED');
    expect(codeOf(() => parseSealed('hunter2'))).toBe('SECRET_MALFORMED');
    expect(codeOf(() => sealValue(new Uint8Array(MAX_SECRET_BYTES + 1), machine.publicKey))).toBe('INVALID_INPUT');
    expect(codeOf(() => sealValue(plain, 'ed25519:AAAA'))).toBe('INVALID_INPUT');
  });
});
