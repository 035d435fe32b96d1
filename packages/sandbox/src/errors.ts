import { ErrorCode, LowcloudError } from '@lowcloud/api';

export class NotWasmError extends LowcloudError {
  override name = 'NotWasmError';
  constructor(file: string, detail: string) {
    super(ErrorCode.NOT_WASM, `${file} is not a WebAssembly binary: ${detail}`, { details: { file } });
  }
}

export class UnsupportedWorldError extends LowcloudError {
  override name = 'UnsupportedWorldError';
  constructor(file: string, detail: string) {
    super(ErrorCode.UNSUPPORTED_WORLD, `${file}: ${detail}`, { details: { file } });
  }
}

export class GrantUnavailableError extends LowcloudError {
  override name = 'GrantUnavailableError';
  constructor(grant: string, detail: string) {
    super(ErrorCode.GRANT_UNAVAILABLE, `grants.${grant}: ${detail}`, { details: { grant } });
  }
}

/** The guest host could not be started inside its confinement (the launcher or the wall refused): no guest code ran. */
export class GuestStartError extends LowcloudError {
  override name = 'GuestStartError';
  constructor(detail: string, cause?: unknown) {
    super(ErrorCode.GUEST_START_FAILED, `the guest host did not start inside its confinement: ${detail}; no guest code ran`, { cause });
  }
}

/**
 * A shared start that failed after its guest was sent: the host went away (ended, or its channel
 * closed) or did not confirm it in time, before it said it had it (a shared start is answered once
 * its host has the guest).
 */
export class SharedGuestLostError extends LowcloudError {
  override name = 'SharedGuestLostError';
  constructor(guest: string, detail: string) {
    super(ErrorCode.GUEST_START_FAILED, `shared guest ${guest} not started: ${detail}`, { details: { guest } });
  }
}

/** A directory given to a guest cannot be one (a file or a link where a directory belongs). */
export class GuestDirError extends LowcloudError {
  override name = 'GuestDirError';
  constructor(dir: string, detail: string) {
    super(ErrorCode.INVALID_INPUT, `${dir}: ${detail}`, { details: { dir } });
  }
}

/** A setting of the sandbox's own (an environment variable the operator sets) is not usable. */
export class SandboxSettingError extends LowcloudError {
  override name = 'SandboxSettingError';
  constructor(setting: string, detail: string) {
    super(ErrorCode.INVALID_INPUT, `${setting}: ${detail}`, { details: { setting } });
  }
}
