/**
 * Every error lowcloud reports carries a stable `code`. Codes are part of the public contract:
 * scripts and the agent protocol match on them, so never rename one; add new ones.
 */
export const ErrorCode = {
  // input files and flags
  INVALID_INPUT: 'INVALID_INPUT',
  INVALID_SIZE: 'INVALID_SIZE',
  INVALID_CPU: 'INVALID_CPU',
  /** A network grant's connect target that is not ip:port, [ipv6]:port, cidr:port or host:port. */
  INVALID_CONNECT: 'INVALID_CONNECT',
  INFRA_INVALID: 'INFRA_INVALID',
  NOT_WASM: 'NOT_WASM',
  UNSUPPORTED_WORLD: 'UNSUPPORTED_WORLD',
  FILE_NOT_FOUND: 'FILE_NOT_FOUND',
  GIT_REVISION_NOT_FOUND: 'GIT_REVISION_NOT_FOUND',
  // plans
  PLAN_STALE: 'PLAN_STALE',
  PLAN_FORMAT: 'PLAN_FORMAT',
  // grants and the sandbox
  GRANT_DENIED: 'GRANT_DENIED',
  GRANT_UNAVAILABLE: 'GRANT_UNAVAILABLE',
  GUEST_TRAP: 'GUEST_TRAP',
  /** The guest host could not be started inside its confinement (no guest code ran). */
  GUEST_START_FAILED: 'GUEST_START_FAILED',
  // agent protocol
  BAD_MESSAGE: 'BAD_MESSAGE',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  UNKNOWN_KEY: 'UNKNOWN_KEY',
  /** The key is trusted, but only to read (`--trust-read`) and the call changes state. */
  FORBIDDEN: 'FORBIDDEN',
  BAD_SIGNATURE: 'BAD_SIGNATURE',
  REPLAYED: 'REPLAYED',
  EXPIRED: 'EXPIRED',
  STALE_GENERATION: 'STALE_GENERATION',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  DIGEST_MISMATCH: 'DIGEST_MISMATCH',
  BLOB_MISSING: 'BLOB_MISSING',
  NOT_FOUND: 'NOT_FOUND',
  AGENT_KEY_MISMATCH: 'AGENT_KEY_MISMATCH',
  AGENT_UNREACHABLE: 'AGENT_UNREACHABLE',
  /** The agent's reply does not match the protocol (the client refuses to act on it). */
  BAD_REPLY: 'BAD_REPLY',
  /** The agent's state filesystem is full, or below the reserve it keeps for its state and stops. */
  STATE_DISK_FULL: 'STATE_DISK_FULL',
  // sealed secrets (api/src/secrets)
  /** Not a sealed string at all: wrong prefix, bad base64, too short. */
  SECRET_MALFORMED: 'SECRET_MALFORMED',
  /** `sealed:vN:` of a version this lowcloud does not read. */
  SECRET_UNKNOWN_VERSION: 'SECRET_UNKNOWN_VERSION',
  /** Sealed to another machine's key than the one that should open it. */
  SECRET_WRONG_MACHINE: 'SECRET_WRONG_MACHINE',
  /** Well-formed and addressed to this machine, but the authentication tag does not verify (changed or truncated). */
  SECRET_DOES_NOT_OPEN: 'SECRET_DOES_NOT_OPEN',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The shape an error takes on the wire and in `--json` output. Never a stack trace. */
export interface WireError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export class LowcloudError extends Error {
  override name = 'LowcloudError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }

  toWire(): WireError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/**
 * A command line that cannot mean anything (a flag value of the wrong form): a CLI exits with
 * status 2 for it, as shells and Unix tools do for usage errors, without starting anything.
 */
export class UsageError extends LowcloudError {
  override name = 'UsageError';
}

/** A network grant's connect target that cannot be parsed: which field, the text, why, and the forms that work. */
export class InvalidConnectTargetError extends LowcloudError {
  override name = 'InvalidConnectTargetError';
  readonly field: string;
  readonly value: string;
  readonly reason: string;
  readonly hint: string;

  constructor(field: string, value: string, reason: string, hint: string) {
    super(ErrorCode.INVALID_CONNECT, `${field}: "${value}" ${reason}; ${hint}`, { details: { field, value } });
    this.field = field;
    this.value = value;
    this.reason = reason;
    this.hint = hint;
  }
}

/** A problem located in an input: which file, where, which field, what is wrong, how to fix it. */
export interface Diagnostic {
  file: string;
  line?: number;
  column?: number;
  /** Field path such as `processes.kv.grants.memory`; empty for the whole file. */
  path: string;
  message: string;
  hint?: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line === undefined ? d.file : `${d.file}:${d.line}:${d.column ?? 1}`;
  const field = d.path === '' ? '' : ` ${d.path}:`;
  return `${where}:${field} ${d.message}${d.hint === undefined ? '' : ` (${d.hint})`}`;
}

/** Raised with every problem found in one input, so a user sees them all at once. */
export class InvalidInputError extends LowcloudError {
  override name = 'InvalidInputError';
  readonly diagnostics: readonly Diagnostic[];

  constructor(diagnostics: readonly Diagnostic[], code: ErrorCode = ErrorCode.INFRA_INVALID) {
    super(code, diagnostics.map(formatDiagnostic).join('\n'), { details: { diagnostics } });
    this.diagnostics = diagnostics;
  }
}

/** Turn anything thrown into the wire shape; unknown errors never leak their stack. */
export function toWireError(err: unknown): WireError {
  if (err instanceof LowcloudError) return err.toWire();
  return { code: ErrorCode.INTERNAL, message: err instanceof Error ? err.message : String(err) };
}
