export { ErrorCode, LowcloudError, InvalidInputError, formatDiagnostic, toWireError } from './errors.js';
export type { Diagnostic, WireError } from './errors.js';
export { parseSize, formatSize, parseCpu } from './units.js';
export { sha256Hex, canonicalJson } from './digest.js';
export { specDigest } from './spec.js';
export type { ProcessSpec, Grants, NetworkGrant, RestartPolicy } from './spec.js';
