import fs from 'node:fs';
import { ErrorCode, isSealed, LowcloudError, SecretError, SEALED_PREFIX, type ProcessSpec } from '@lowcloud/api';
import { openSealed, type OpeningKey } from '@lowcloud/api/secrets';
import type { GuestOptions } from '@lowcloud/sandbox';

/**
 * Opens a process's sealed values (api/src/secrets) with this agent's own key, only as its guest
 * starts. The spec, state.json and the blobs keep the ciphertext; the plaintext goes into the
 * guest's options alone, which reach the guest host on its boot pipe (never a file): env values as
 * they are, a sealed config file as `{ guest, content }`, served read-only from the guest host's
 * memory. A value that does not open fails this start with its code (SECRET_MALFORMED,
 * SECRET_UNKNOWN_VERSION, SECRET_WRONG_MACHINE, SECRET_DOES_NOT_OPEN); errors name where the value
 * is, never any part of it.
 */
export function openSecrets(spec: ProcessSpec, key: OpeningKey, blobPath: (digest: string) => string): Pick<GuestOptions, 'env' | 'config'> {
  const open = (where: string, text: string): Uint8Array => {
    try {
      return openSealed(text, key);
    } catch (err) {
      if (!(err instanceof LowcloudError)) throw err;
      throw new SecretError(err.code, `process ${spec.name}: ${where}: ${err.message}`, { details: { process: spec.name, where, ...err.details } });
    }
  };
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.env)) {
    if (!isSealed(v)) {
      env[k] = v;
      continue;
    }
    const bytes = open(`env ${k}`, v);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      text = '\0';
    }
    // An environment holds text: a value that is not UTF-8 or holds a NUL would arrive changed.
    if (text.includes('\0')) throw new SecretError(ErrorCode.SECRET_MALFORMED, `process ${spec.name}: env ${k}: the opened value is not UTF-8 text without NUL bytes (seal a file like that as a config file instead)`, { details: { process: spec.name, where: `env ${k}` } });
    env[k] = text;
  }
  const config = Object.entries(spec.config).map(([guest, digest]) => {
    const host = blobPath(digest);
    const text = sealedText(host);
    return text === null ? { guest, host } : { guest, content: open(`config ${guest}`, text) };
  });
  return { env, config };
}

/** The blob's text when it is a sealed file (it starts with `sealed:`), else null: only its first bytes are read. */
function sealedText(file: string): string | null {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(SEALED_PREFIX.length);
    if (fs.readSync(fd, head, 0, head.length, 0) < head.length || head.toString('latin1') !== SEALED_PREFIX) return null;
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}
