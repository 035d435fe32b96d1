export { ErrorCode, LowcloudError, InvalidInputError, formatDiagnostic, toWireError } from './errors.js';
export type { Diagnostic, WireError } from './errors.js';
export { parseSize, formatSize, parseCpu } from './units.js';
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
  parseRequest,
  parseReply,
  parseResult,
  processSpecSchema,
  findForbiddenKey,
  FORBIDDEN_KEYS,
  MUTATING,
  READ_CALLS,
  requiredRole,
  ENFORCEMENT_LEVELS,
  GRANTS,
} from './protocol/index.js';
export type {
  Request,
  RequestType,
  RequestOf,
  Reply,
  Results,
  ResultType,
  Role,
  ChannelBinding,
  AgentStatus,
  ProcessStatus,
  ProcessState,
  ProcessUsage,
  PublicSpec,
  AgentEvent,
  AgentEventKind,
  Capabilities,
  Enforcement,
  EnforcementLevel,
  EnforcementReport,
  ExitKind,
  Grant,
  GuestExit,
} from './protocol/index.js';
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
