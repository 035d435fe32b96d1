export type { Request, RequestType, Reply, AgentStatus, ProcessStatus, ProcessState, AgentEvent } from './messages.js';
export { MUTATING } from './messages.js';
export { parseRequest, processSpecSchema } from './schema.js';
