// @lowcloud/api/infra: reading an infra file (parse, check, resolve, hash) and what its errors,
// digests and specs need, without the agent protocol, signing, the agent client or sealing's
// cryptography. What `lowcloud plan BASE TARGET` loads (its side workers, planner/src/load-worker.ts,
// and the command itself): half the modules of the barrel.
export { ErrorCode, LowcloudError, InvalidInputError } from '../errors.js';
export { canonicalJson, sha256Hex } from '../digest.js';
export { formatSize } from '../units.js';
export { envDigests, isolationOf } from '../spec.js';
export type { ProcessSpec, Grants } from '../spec.js';
export { parseConnectTarget } from '../grants/network.js';
export { loadInfra, loadInfraDigests } from './resolve.js';
export type { ResolvedDigests, ResolvedInfra, ResolvedMachine } from './resolve.js';
export { WorkingTreeSource, GitRevisionSource } from './file-source.js';
