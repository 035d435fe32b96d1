export type { InfraFile, MachineEntry, ProcessEntry, GrantsEntry, NetworkEntry, CapacityEntry } from './types.js';
export { infraSchema } from './schema.js';
export { parseInfra } from './parse.js';
export type { ParsedInfra } from './parse.js';
export { loadInfra, resolveInfra } from './resolve.js';
export type { ResolvedInfra, ResolvedMachine, ResolvedProcess } from './resolve.js';
export { WorkingTreeSource, GitRevisionSource } from './file-source.js';
export type { FileSource, FileRead } from './file-source.js';
