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
} from './messages.js';
export { MUTATING, READ_CALLS, requiredRole } from './messages.js';
export type { Capabilities, Enforcement, EnforcementLevel, EnforcementReport, ExitKind, Grant, GuestExit } from './report.js';
export { ENFORCEMENT_LEVELS, GRANTS } from './report.js';
export { parseRequest, processSpecSchema, findForbiddenKey, FORBIDDEN_KEYS } from './schema.js';
export { parseReply, parseResult } from './replies.js';
