export { ErrorCode, LowcloudError, InvalidInputError, formatDiagnostic, toWireError } from './errors.js';
export type { Diagnostic, WireError } from './errors.js';
export { parseSize, formatSize, parseCpu } from './units.js';
