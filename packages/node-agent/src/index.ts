export { Agent } from './agent/agent.js';
export { SOFT_FRAME_LIMIT } from './agent/connection.js';
export { DEFAULT_LIMITS, type NetworkLimits } from './agent/server.js';
export type { AgentOptions } from './agent/agent.js';
export { compileAgentOptions } from './options.js';
export { verifyAuditLog } from './agent/audit-log.js';
export { ProcessSupervisor, backoffDelay, DEFAULT_BACKOFF } from './agent/supervisor.js';
export type { BackoffPolicy, GuestRunner } from './agent/supervisor.js';
