import { randomBytes, type KeyObject } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ErrorCode, LowcloudError } from '../errors.js';

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

export const SEALED_PREFIX = 'sealed:';
const V1 = 'sealed:v1:';
const INFO = new TextEncoder().encode('lowcloud sealed:v1');
const KEY_BYTES = 32;
const TAG_BYTES = 16;
/** A secret is a password or a small file: a cap keeps sealed values out of the way of real blobs. */
export const MAX_SECRET_BYTES = 1024 * 1024;

export class SecretError extends LowcloudError {
  override name = 'SecretError';
}

export interface SealedValue {
  version: 1;
  /** The Ed25519 key it is sealed to, written as the infra file pins keys (`ed25519:` + base64). */
  recipient: string;
  /** The sealed string exactly as written. */
  text: string;
  ephemeral: Uint8Array;
  ciphertext: Uint8Array;
}

/** Whether a string claims to be sealed (it may still be malformed: parse it to know). */
export function isSealed(text: string): boolean {
  return text.startsWith(SEALED_PREFIX);
}

const recipientText = (raw: Uint8Array) => `ed25519:${Buffer.from(raw).toString('base64')}`;

function rawKey(key: string): Uint8Array {
  const raw = key.startsWith('ed25519:') ? Buffer.from(key.slice(8), 'base64') : Buffer.alloc(0);
  if (raw.length !== KEY_BYTES) throw new SecretError(ErrorCode.INVALID_INPUT, `"${key.slice(0, 60)}" is not an ed25519 public key (expected ed25519: + base64 of 32 bytes)`);
  return raw;
}

/** Parse a sealed string (a sealed file's contents may end in whitespace). Never needs a key. */
export function parseSealed(input: string): SealedValue {
  const text = input.trim();
  if (!isSealed(text)) throw new SecretError(ErrorCode.SECRET_MALFORMED, 'not a sealed value (it does not start with "sealed:")');
  const version = /^sealed:(v[^:]*):/.exec(text)?.[1];
  if (version === undefined) throw new SecretError(ErrorCode.SECRET_MALFORMED, 'not a sealed value (expected sealed:v1:...)');
  if (version !== 'v1') {
    throw new SecretError(ErrorCode.SECRET_UNKNOWN_VERSION, `sealed with version ${version.slice(0, 16)}, and this lowcloud reads only v1`, { details: { version: version.slice(0, 16) } });
  }
  const body = text.slice(V1.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw new SecretError(ErrorCode.SECRET_MALFORMED, 'the sealed value is not base64url after sealed:v1: (was it cut or wrapped?)');
  const bytes = Buffer.from(body, 'base64url');
  if (bytes.length < 2 * KEY_BYTES + TAG_BYTES) throw new SecretError(ErrorCode.SECRET_MALFORMED, 'the sealed value is too short to hold a key and a tag (was it cut?)');
  if (bytes.length > 2 * KEY_BYTES + TAG_BYTES + MAX_SECRET_BYTES) throw new SecretError(ErrorCode.SECRET_MALFORMED, `the sealed value holds more than ${MAX_SECRET_BYTES} bytes`);
  return {
    version: 1,
    recipient: recipientText(bytes.subarray(0, KEY_BYTES)),
    text,
    ephemeral: new Uint8Array(bytes.subarray(KEY_BYTES, 2 * KEY_BYTES)),
    ciphertext: new Uint8Array(bytes.subarray(2 * KEY_BYTES)),
  };
}

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
