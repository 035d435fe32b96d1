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
