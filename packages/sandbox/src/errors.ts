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
