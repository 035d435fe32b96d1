// @lowcloud/api/infra: reading an infra file (parse, check, resolve, hash) and what its errors and
// digests need, without the agent protocol, signing, the agent client or sealing's cryptography.
// What `plan`'s side workers load (planner/src/load-worker.ts): half the modules of the barrel.
export { ErrorCode, LowcloudError, InvalidInputError } from '../errors.js';
export { canonicalJson, sha256Hex } from '../digest.js';
export { loadInfra, loadInfraDigests } from './resolve.js';
export type { ResolvedDigests, ResolvedInfra, ResolvedMachine } from './resolve.js';
export { WorkingTreeSource, GitRevisionSource } from './file-source.js';
