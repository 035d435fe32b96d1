export { ErrorCode, LowcloudError, InvalidInputError, InvalidConnectTargetError, UsageError, formatDiagnostic, toWireError } from './errors.js';
export type { Diagnostic, WireError } from './errors.js';
export { parseSize, formatSize, parseCpu } from './units.js';
export {
  CONNECT_FORMS,
  parseConnectTarget,
  parseConnectTargets,
  formatConnectTarget,
  normalizeConnect,
  connectList,
  parseNetworkGrant,
  unresolvedProcessTarget,
} from './grants/network.js';
export type { ConnectTarget, ConnectTargetKind, NetworkAccess } from './grants/network.js';
export { sha256Hex, canonicalJson } from './digest.js';
export { specDigest, envDigests, publicSpec } from './spec.js';
export type { ProcessSpec, Grants, NetworkGrant, RestartPolicy } from './spec.js';
export {
  infraSchema,
  parseInfra,
  loadInfra,
  resolveInfra,
  WorkingTreeSource,
  GitRevisionSource,
} from './infra/index.js';
export type {
  InfraFile,
  MachineEntry,
  ProcessEntry,
  GrantsEntry,
  NetworkEntry,
  CapacityEntry,
  ParsedInfra,
  ResolvedInfra,
  ResolvedMachine,
  ResolvedProcess,
  FileSource,
} from './infra/index.js';
export {
  generateKeyPair,
  formatPublicKey,
  parsePublicKey,
  parsePrivateKey,
  privateKeyPem,
  signBytes,
  verifyBytes,
  signRequest,
  verifyRequest,
  bodyDigest,
} from './signing.js';
export type { KeyPair, RequestAuth, SignedFields } from './signing.js';
export * from './protocol/index.js';
