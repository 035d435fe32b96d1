import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson, sha256Hex } from './digest.js';
import { ErrorCode, LowcloudError } from './errors.js';

/**
 * Ed25519 keys and request signatures, ssh-style: no CA. Public keys are written the way the infra
 * file pins them, `ed25519:` + base64 of the raw 32 bytes.
 */

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface KeyPair {
  publicKey: string;
  privateKey: KeyObject;
}

export function generateKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { publicKey: formatPublicKey(publicKey), privateKey };
}

export function formatPublicKey(key: KeyObject): string {
  return `ed25519:${key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length).toString('base64')}`;
}

export function parsePublicKey(text: string, where = 'key'): KeyObject {
  const t = text.trim();
  const raw = t.startsWith('ed25519:') ? Buffer.from(t.slice(8), 'base64') : null;
  if (raw === null || raw.length !== 32) {
    throw new LowcloudError(ErrorCode.INVALID_INPUT, `${where}: "${t.slice(0, 60)}" is not an ed25519 public key (expected ed25519: + base64 of 32 bytes)`);
  }
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** A private key file: PKCS#8 PEM, as `lowcloud keygen` writes it. */
export function parsePrivateKey(pem: string, where = 'private key'): KeyPair {
  try {
    const privateKey = createPrivateKey(pem);
    return { privateKey, publicKey: formatPublicKey(createPublicKey(privateKey)) };
  } catch (err) {
    throw new LowcloudError(ErrorCode.INVALID_INPUT, `${where}: not an ed25519 private key in PEM form`, { cause: err });
  }
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function signBytes(key: KeyObject, data: string | Uint8Array): string {
  return sign(null, typeof data === 'string' ? Buffer.from(data) : data, key).toString('base64');
}

/** Parsed public keys by their text: an agent verifies every call with one of a few trusted keys. */
const verifyKeys = new Map<string, KeyObject>();

export function verifyBytes(publicKey: string, data: string | Uint8Array, signature: string): boolean {
  try {
    let key = verifyKeys.get(publicKey);
    if (key === undefined) {
      key = parsePublicKey(publicKey);
      // Bounded: only well-formed keys get here, but a peer may send many.
      if (verifyKeys.size >= 64) verifyKeys.clear();
      verifyKeys.set(publicKey, key);
    }
    return verify(null, typeof data === 'string' ? Buffer.from(data) : data, key, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/** What a mutating request's signature covers. */
export interface SignedFields {
  /** The agent's public key: a signature for one agent is useless at another. */
  agent: string;
  /** sha256 of the canonical JSON of the request without its `auth`. */
  body: string;
  generation: number;
  /** Milliseconds since the epoch. */
  timestamp: number;
  nonce: string;
}

export interface RequestAuth {
  key: string;
  generation: number;
  timestamp: number;
  nonce: string;
  signature: string;
}

/**
 * sha256 of the canonical JSON of a request without its `auth`. A `batch`'s covers its calls
 * through theirs: its `calls` are replaced by each call's own digest (which is what each call's
 * audit line records), so a batch costs one canonical form per call, not two. `seen` is given each
 * call's digest.
 */
export function bodyDigest(request: object, seen?: (call: object, digest: string) => void): string {
  const { auth: _auth, ...body } = request as { auth?: unknown; type?: unknown; calls?: unknown };
  if (body.type === 'batch' && Array.isArray(body.calls)) {
    body.calls = (body.calls as unknown[]).map((c) => {
      // A call that is not an object is refused by the schema before any signature is checked.
      const d = c !== null && typeof c === 'object' ? bodyDigest(c) : sha256Hex(canonicalJson(c));
      if (seen !== undefined && c !== null && typeof c === 'object') seen(c, d);
      return d;
    });
  }
  return sha256Hex(canonicalJson(body));
}

export function signRequest(request: object, agent: string, generation: number, key: KeyPair, now = Date.now()): RequestAuth {
  const fields: SignedFields = { agent, body: bodyDigest(request), generation, timestamp: now, nonce: randomBytes(16).toString('hex') };
  return { key: key.publicKey, generation, timestamp: fields.timestamp, nonce: fields.nonce, signature: signBytes(key.privateKey, canonicalJson(fields)) };
}

/**
 * Body digests of the requests `verifyRequest` checked, by request object: the agent records the
 * same digest in its audit log, and computing it again (canonical JSON of a whole spec and its
 * sha256) was ~0.2 s of the agent's CPU in a 1,000-start `up`. A received request is not changed
 * after it is parsed; a WeakMap keeps nothing alive.
 */
const verifiedBodies = new WeakMap<object, string>();

export function verifyRequest(request: object, agent: string, auth: RequestAuth): boolean {
  const body = bodyDigest(request, (call, digest) => verifiedBodies.set(call, digest));
  verifiedBodies.set(request, body);
  const fields: SignedFields = { agent, body, generation: auth.generation, timestamp: auth.timestamp, nonce: auth.nonce };
  return verifyBytes(auth.key, canonicalJson(fields), auth.signature);
}

/** `bodyDigest` of a request as `verifyRequest` computed it (computed now if it did not see it). */
export function verifiedBodyDigest(request: object): string {
  return verifiedBodies.get(request) ?? bodyDigest(request);
}
