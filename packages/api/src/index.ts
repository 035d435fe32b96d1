// What other packages (and test/, bench/) use of @lowcloud/api, by name; nothing else. The agent
// client is the separate entry @lowcloud/api/client; the network grant's parsing alone is
// @lowcloud/api/grants/network (a guest host's worker loads it without the rest); reading infra
// files alone is @lowcloud/api/infra (`plan`'s side workers). Checking requests that arrive
// (`parseRequest`, `parseBlobFrame`: the agent's side) is @lowcloud/api/requests (its generated
// validator took ~20 ms of every command's start-up, and a command only sends requests).

// Errors: classes with stable codes; the wire shape.
export { ErrorCode, LowcloudError, InvalidInputError, InvalidConnectTargetError, UsageError, toWireError } from './errors.js';

// Units and digests.
export { parseSize, formatSize, parseCpu } from './units.js';
export { sha256Hex, canonicalJson } from './digest.js';

// A process spec: what a planner sends and an agent keeps.
export { specDigest, envDigests, publicSpec, isolationOf, ISOLATIONS } from './spec.js';
export type { ProcessSpec, Grants, NetworkGrant, Isolation } from './spec.js';

// Grants as typed values.
export { CONNECT_FORMS, parseConnectTarget, formatConnectTarget, connectList, parseNetworkGrant, unresolvedProcessTarget } from './grants/network.js';
export type { ConnectTarget, NetworkAccess } from './grants/network.js';

// The infrastructure file. `infraSchema` is published as schema/infra.schema.json (npm run schema).
export { infraSchema } from './infra/schema.js';
export type { InfraFile } from './infra/types.js';
export { parseInfra } from './infra/parse.js';
export type { ParsedInfra } from './infra/parse.js';
export { loadInfra, loadInfraDigests } from './infra/resolve.js';
export { machineAddress } from './infra/names.js';
export type { ResolvedDigests, ResolvedInfra, ResolvedMachine } from './infra/resolve.js';
export { WorkingTreeSource, GitRevisionSource } from './infra/file-source.js';

// Sealed secrets: values sealed to one machine's pinned key (api/src/secrets). Their format here;
// sealing and opening (`sealValue`, `openSealed`) are the entry @lowcloud/api/secrets: the curves
// and ciphers they load (@noble) took ~55 ms of every command's start-up, `plan` and `up` included,
// which never seal or open anything.
export { isSealed, parseSealed, SEALED_PREFIX, SecretError } from './secrets/sealed-format.js';
export type { SealedValue } from './secrets/sealed-format.js';

// Keys and signatures.
export { generateKeyPair, parsePublicKey, parsePrivateKey, privateKeyPem, signBytes, verifyBytes, signRequest, verifyRequest, bodyDigest, verifiedBodyDigest } from './signing.js';
export type { KeyPair, RequestAuth } from './signing.js';

// The agent protocol and what the sandbox reports through it.
export type { BatchedCall, Request, Reply, Results, ResultType, Role, AgentStatus, ProcessStatus, ProcessState, AgentEvent } from './protocol/messages.js';
export { BATCHED_CALLS, MAX_BATCH_CALLS, requiredRole } from './protocol/messages.js';
export { BLOB_CHUNK_BYTES, BLOB_FRAME_MAX_BYTES, encodeBlobFrame, readBlobFrame } from './protocol/blob-frame.js';
export { channelBinding, helloProofData } from './protocol/handshake.js';
export type { Capabilities, Enforcement, EnforcementLevel, EnforcementReport, ExitKind, Grant, GuestExit } from './protocol/report.js';
export { ENFORCEMENT_LEVELS, GRANTS } from './protocol/report.js';
