import { ErrorCode, LowcloudError } from '@lowcloud/api';

/**
 * The errors the node agent reports, as classes with the stable codes of `ErrorCode` (api). They
 * cross the wire as `{code, message, details}` through `toWireError` at the connection.
 */

/** The state filesystem has no room for a write, or new work would take it below the reserve. */
export class StateDiskFullError extends LowcloudError {
  override name = 'StateDiskFullError';

  constructor(
    readonly stateDir: string,
    what: string,
    space: { neededBytes: number; freeBytes: number; reserveBytes: number },
    cause?: unknown,
  ) {
    super(
      ErrorCode.STATE_DISK_FULL,
      `the agent's state directory ${stateDir} is out of space: ${what} needs ${space.neededBytes} bytes and keeps ${space.reserveBytes} in reserve, ${space.freeBytes} are free; free space on that filesystem (or lower --state-reserve), then retry`,
      { details: { stateDir, ...space }, ...(cause === undefined ? {} : { cause }) },
    );
  }
}

/** A call names a process this agent does not have. */
export class ProcessNotFoundError extends LowcloudError {
  override name = 'ProcessNotFoundError';

  constructor(readonly process: string) {
    super(ErrorCode.NOT_FOUND, `no process ${process} on this agent`, { details: { process } });
  }
}

/** A start or replace-config names blobs the agent does not hold. */
export class BlobMissingError extends LowcloudError {
  override name = 'BlobMissingError';

  constructor(readonly missing: string[]) {
    super(ErrorCode.BLOB_MISSING, `upload these blobs first: ${missing.join(', ')}`, { details: { missing } });
  }
}

/** A file of the state directory the agent cannot use as it is (names the file and the fix). */
export class StateFileError extends LowcloudError {
  override name = 'StateFileError';

  constructor(
    readonly file: string,
    problem: string,
    fix: string,
  ) {
    super(ErrorCode.INVALID_INPUT, `${file}: ${problem}; ${fix}`, { details: { file } });
  }
}

/** An errno error that means the filesystem has no room (ENOSPC, or a quota: EDQUOT). */
export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** A flag of `lowcloud agent` that cannot be used as given (names the flag and the fix). */
export class AgentFlagError extends LowcloudError {
  override name = 'AgentFlagError';

  constructor(
    readonly flag: string,
    message: string,
    code: typeof ErrorCode.INVALID_INPUT | typeof ErrorCode.FILE_NOT_FOUND = ErrorCode.INVALID_INPUT,
  ) {
    super(code, message, { details: { flag } });
  }
}

/** The codes a call's authentication can fail with. */
export type AuthErrorCode = typeof ErrorCode.UNAUTHENTICATED | typeof ErrorCode.UNKNOWN_KEY | typeof ErrorCode.BAD_SIGNATURE | typeof ErrorCode.FORBIDDEN | typeof ErrorCode.EXPIRED | typeof ErrorCode.REPLAYED | typeof ErrorCode.STALE_GENERATION;

/** A call refused before it runs: unsigned, an unknown key, a bad signature, a read key writing, expired, replayed, stale. */
export class CallAuthError extends LowcloudError {
  override name = 'CallAuthError';

  constructor(code: AuthErrorCode, message: string, options?: { details?: Record<string, unknown> }) {
    super(code, message, options);
  }
}

/** A put-blob chunk the agent does not take as sent (too large, at the wrong offset, past its size). */
export class BlobChunkError extends LowcloudError {
  override name = 'BlobChunkError';

  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.INVALID_INPUT, message, details === undefined ? undefined : { details });
  }
}

/** A completed blob whose bytes do not hash to its name: nothing is stored. */
export class DigestMismatchError extends LowcloudError {
  override name = 'DigestMismatchError';

  constructor(expected: string, actual: string) {
    super(ErrorCode.DIGEST_MISMATCH, `put-blob: the bytes hash to ${actual}, not ${expected}; nothing was stored`, { details: { expected, actual } });
  }
}

/** A start or replace-config that does not fit the process as it is (another spec runs; more than config changes). */
export class SpecConflictError extends LowcloudError {
  override name = 'SpecConflictError';

  constructor(readonly process: string, message: string) {
    super(ErrorCode.INVALID_INPUT, message, { details: { process } });
  }
}

/** A connection asked to follow more logs and event streams than it may at once. */
export class TooManyFollowedError extends LowcloudError {
  override name = 'TooManyFollowedError';

  constructor(max: number) {
    super(ErrorCode.INVALID_INPUT, `a connection may follow at most ${max} logs and event streams at once; close one first`, { details: { max } });
  }
}

/** `lowcloud keygen` would overwrite a key file. */
export class KeyExistsError extends LowcloudError {
  override name = 'KeyExistsError';

  constructor(readonly file: string) {
    super(ErrorCode.INVALID_INPUT, `${file} already exists; refusing to overwrite a key`, { details: { file } });
  }
}
