// What other packages (and test/) use of @lowcloud/node-agent, by name; nothing else. The CLI's
// commands are the separate entry @lowcloud/node-agent/cli.
export { verifyAuditLog } from './agent/audit-log.js';
