import { ErrorCode, LowcloudError } from '../errors.js';

/*
 * The format of a sealed value, without its cryptography (sealed.ts): enough to recognise and
 * check a sealed string, which is all an infra file's resolution needs. Kept apart so that a
 * command that only reads infra files (`plan`'s side workers) does not load the @noble libraries.
 */

export const SEALED_PREFIX = 'sealed:';
export const V1 = 'sealed:v1:';
export const KEY_BYTES = 32;
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

export function rawKey(key: string): Uint8Array {
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
