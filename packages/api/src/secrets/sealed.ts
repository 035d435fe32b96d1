import { randomBytes, type KeyObject } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ErrorCode } from '../errors.js';
import { KEY_BYTES, MAX_SECRET_BYTES, parseSealed, rawKey, SecretError, V1 } from './sealed-format.js';

/**
 * Sealed secrets: a value encrypted to one machine's pinned Ed25519 key, so the infra file can hold
 * it in a public repository and only that machine's agent can read it.
 *
 * `sealed:v1:` + base64url(A || E || C), where
 *   A  = the recipient agent's Ed25519 public key (32 bytes, as the file pins it),
 *   E  = a fresh X25519 public key (32 bytes) whose secret e is thrown away after sealing,
 *   ss = X25519(e, toMontgomery(A))         (low-order points refused),
 *   k  = HKDF-SHA256(ikm ss, salt E || A, info "lowcloud sealed:v1", 32 bytes),
 *   C  = ChaCha20-Poly1305(k, nonce 0^12, aad "sealed:v1:" || A || E, plaintext) (+16-byte tag).
 * The agent opens with X25519(toMontgomerySecret(seed of its Ed25519 key), E): the conversion
 * libsodium offers as crypto_sign_ed25519_sk_to_curve25519. Each k seals one message, so a fixed
 * nonce is safe. Primitives come from the audited @noble libraries; nothing here is a primitive.
 */

export { isSealed, MAX_SECRET_BYTES, parseSealed, SEALED_PREFIX, SecretError } from './sealed-format.js';
export type { SealedValue } from './sealed-format.js';

const INFO = new TextEncoder().encode('lowcloud sealed:v1');

const aad = (a: Uint8Array, e: Uint8Array) => Buffer.concat([Buffer.from(V1), a, e]);
const deriveKey = (shared: Uint8Array, a: Uint8Array, e: Uint8Array) => hkdf(sha256, shared, Buffer.concat([e, a]), INFO, KEY_BYTES);

/** Seal bytes to the machine whose agent holds the private half of `recipient` (`ed25519:...`). */
export function sealValue(plaintext: Uint8Array, recipient: string): string {
  if (plaintext.length > MAX_SECRET_BYTES) throw new SecretError(ErrorCode.INVALID_INPUT, `a secret may hold at most ${MAX_SECRET_BYTES} bytes (this one has ${plaintext.length})`);
  const a = rawKey(recipient);
  const secret = new Uint8Array(randomBytes(KEY_BYTES));
  const e = x25519.getPublicKey(secret);
  const k = deriveKey(x25519.getSharedSecret(secret, ed25519.utils.toMontgomery(a)), a, e);
  secret.fill(0);
  const c = chacha20poly1305(k, new Uint8Array(12), aad(a, e)).encrypt(plaintext);
  k.fill(0);
  return `${V1}${Buffer.concat([a, e, c]).toString('base64url')}`;
}

/** The agent's side: its Ed25519 key pair (a Node KeyObject, as `agent.key` is loaded). */
export interface OpeningKey {
  publicKey: string;
  privateKey: KeyObject;
}

/**
 * Open a sealed string with this machine's key. Errors say what is wrong and never include the
 * value or any part of the plaintext: SECRET_MALFORMED, SECRET_UNKNOWN_VERSION,
 * SECRET_WRONG_MACHINE (sealed to another key), SECRET_DOES_NOT_OPEN (changed after sealing).
 */
export function openSealed(text: string, key: OpeningKey): Uint8Array {
  const v = parseSealed(text);
  if (v.recipient !== key.publicKey) {
    throw new SecretError(ErrorCode.SECRET_WRONG_MACHINE, `sealed to ${v.recipient}, not to this machine's key ${key.publicKey}: re-seal it with lowcloud secret seal --machine NAME`, {
      details: { sealedTo: v.recipient, machineKey: key.publicKey },
    });
  }
  const a = rawKey(v.recipient);
  const jwk = key.privateKey.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string') throw new SecretError(ErrorCode.INTERNAL, 'the opening key is not an Ed25519 private key');
  const seed = new Uint8Array(Buffer.from(jwk.d, 'base64url'));
  const mine = ed25519.utils.toMontgomerySecret(seed);
  seed.fill(0);
  let k: Uint8Array;
  try {
    k = deriveKey(x25519.getSharedSecret(mine, v.ephemeral), a, v.ephemeral);
  } catch {
    throw new SecretError(ErrorCode.SECRET_DOES_NOT_OPEN, 'the sealed value does not open: its ephemeral key is invalid (the value was changed after sealing)');
  } finally {
    mine.fill(0);
  }
  try {
    return chacha20poly1305(k, new Uint8Array(12), aad(a, v.ephemeral)).decrypt(v.ciphertext);
  } catch {
    throw new SecretError(ErrorCode.SECRET_DOES_NOT_OPEN, 'the sealed value does not open: its authentication tag does not verify (the value was changed after sealing, or cut)');
  } finally {
    k.fill(0);
  }
}
