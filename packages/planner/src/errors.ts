import { ErrorCode, LowcloudError } from '@lowcloud/api/infra';

/**
 * The planner's errors: each a class with a stable code from `ErrorCode` (in `@lowcloud/api`), so
 * scripts match on the code and the CLI prints the message, which names the flag, file or machine
 * and the fix.
 */

/** A flag or argument that cannot mean anything here (`--parallelism 0`, two files with `--base`). */
export class FlagError extends LowcloudError {
  override name = 'FlagError';
  constructor(message: string) {
    super(ErrorCode.INVALID_INPUT, message);
  }
}

/** A plan document that cannot be applied as written: not one, of another major version, a call without its payload. */
export class PlanFormatError extends LowcloudError {
  override name = 'PlanFormatError';
  constructor(source: string, problem: string, options?: { cause?: unknown }) {
    super(ErrorCode.PLAN_FORMAT, `${source}: ${problem}`, { ...options, details: { source } });
  }
}

/** The machines changed since the plan was made (someone else applied, an operator stopped a process). */
export class PlanStaleError extends LowcloudError {
  override name = 'PlanStaleError';
  constructor(drift: string) {
    super(ErrorCode.PLAN_STALE, `the plan is stale: these machines changed since it was made; plan again\n${drift}`);
  }
}

/** An agent that could not be reached, or a machine without one. */
export class AgentUnreachableError extends LowcloudError {
  override name = 'AgentUnreachableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.AGENT_UNREACHABLE, message, options);
  }
}

/** A process or machine the infra file does not have. */
export class UnknownNameError extends LowcloudError {
  override name = 'UnknownNameError';
  constructor(file: string, kind: 'process' | 'machine', name: string, known: readonly string[]) {
    super(ErrorCode.NOT_FOUND, `${file}: no ${kind} ${name} (${kind === 'process' ? 'processes' : 'machines'}: ${known.length === 0 ? 'none' : known.join(', ')})`, { details: { [kind]: name } });
  }
}

/** No key to sign calls with: every call is signed. */
export class MissingKeyError extends LowcloudError {
  override name = 'MissingKeyError';
  constructor() {
    super(ErrorCode.UNAUTHENTICATED, 'give the key that signs calls with --key (made by `lowcloud keygen`) or $LOWCLOUD_KEY');
  }
}

/** A file the planner needs that is not there or not readable: a key, a blob a plan names. */
export class MissingFileError extends LowcloudError {
  override name = 'MissingFileError';
  constructor(message: string, file: string) {
    super(ErrorCode.FILE_NOT_FOUND, message, { details: { file } });
  }
}

/** A blob whose bytes no longer have the digest the plan recorded. */
export class BlobChangedError extends LowcloudError {
  override name = 'BlobChangedError';
  constructor(file: string, actual: string, planned: string) {
    super(ErrorCode.DIGEST_MISMATCH, `${file} changed since the plan was made (sha256 ${actual.slice(0, 12)}, plan has ${planned.slice(0, 12)}); plan again`, { details: { file } });
  }
}

/** Anything thrown, as an Error to report: a non-Error value (never expected) keeps its text. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new LowcloudError(ErrorCode.INTERNAL, String(err));
}
