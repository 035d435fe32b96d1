import { Counter, Gauge, Registry } from 'prom-client';

/** What the network holds of the agent now (see `NetworkLimits`). */
export interface NetworkUsage {
  connections: number;
  unfinishedBytes: number;
  sendQueuedBytes: number;
}

/** What the agent's own storage looks like now: its state filesystem and its audit log. */
export interface StorageHealth {
  disk: { freeBytes: number; totalBytes: number; reserveBytes: number } | null;
  audit: { writable: boolean; failures: number } | null;
}

/** The agent's Prometheus metrics, served at /metrics. */
export function createMetrics(network: () => NetworkUsage | null = () => null, storage: () => StorageHealth = () => ({ disk: null, audit: null })) {
  const registry = new Registry();
  const startedAt = Date.now();
  return {
    registry,
    uptime: new Gauge({ name: 'lowcloud_agent_uptime_seconds', help: 'Seconds since the agent started', registers: [registry], collect() { this.set((Date.now() - startedAt) / 1000); } }),
    connections: new Gauge({ name: 'lowcloud_agent_connections', help: 'Open connections to the agent API', registers: [registry], collect() { this.set(network()?.connections ?? 0); } }),
    unfinished: new Gauge({ name: 'lowcloud_agent_unfinished_message_bytes', help: 'Bytes received in messages not yet complete, all connections', registers: [registry], collect() { this.set(network()?.unfinishedBytes ?? 0); } }),
    sendQueued: new Gauge({ name: 'lowcloud_agent_send_queued_bytes', help: 'Bytes queued to send to clients, all connections', registers: [registry], collect() { this.set(network()?.sendQueuedBytes ?? 0); } }),
    refused: new Counter({ name: 'lowcloud_agent_refused_connections_total', help: 'Connections closed at accept, by reason: rate (new connections per second from one address group), busy (the agent budget of new connections, or its /48 share of it), address (its address group holds its share), full (every unauthenticated slot taken)', labelNames: ['reason'], registers: [registry] }),
    stateDiskFree: new Gauge({ name: 'lowcloud_agent_state_disk_free_bytes', help: 'Free bytes on the filesystem of the agent\'s state directory (new uploads and starts are refused below the reserve)', registers: [registry], collect() { this.set(storage().disk?.freeBytes ?? 0); } }),
    stateDiskSize: new Gauge({ name: 'lowcloud_agent_state_disk_size_bytes', help: 'Size of the filesystem of the agent\'s state directory', registers: [registry], collect() { this.set(storage().disk?.totalBytes ?? 0); } }),
    stateDiskReserve: new Gauge({ name: 'lowcloud_agent_state_disk_reserve_bytes', help: 'Free bytes the agent keeps on its state filesystem to write its state and stop guests (--state-reserve)', registers: [registry], collect() { this.set(storage().disk?.reserveBytes ?? 0); } }),
    auditWritable: new Gauge({ name: 'lowcloud_agent_audit_log_writable', help: '1 while the last append to the audit log succeeded; 0 while it cannot append (every state-changing call is refused)', registers: [registry], collect() { this.set(storage().audit?.writable === false ? 0 : 1); } }),
    auditFailures: new Counter({ name: 'lowcloud_agent_audit_append_failures_total', help: 'Appends to the audit log that failed (each refused its call and left the log as it was)', registers: [registry], collect() { this.reset(); this.inc(storage().audit?.failures ?? 0); } }),
    commitSeconds: new Counter({ name: 'lowcloud_agent_commit_seconds_total', help: 'Seconds state-changing calls spent in each step of their group commit: check, state (state.json written), act (guests started, replaced), audit (lines appended), finish (guests stopped)', labelNames: ['step'], registers: [registry] }),
    commitGroups: new Counter({ name: 'lowcloud_agent_commit_groups_total', help: 'Groups of state-changing calls committed together (one state.json write and one audit append each)', registers: [registry] }),
    commitCalls: new Counter({ name: 'lowcloud_agent_commit_calls_total', help: 'State-changing calls that changed the desired state, summed over groups (calls / groups: the mean group size)', registers: [registry] }),
    calls: new Counter({ name: 'lowcloud_agent_calls_total', help: 'API calls by type and result', labelNames: ['type', 'result'], registers: [registry] }),
    cpu: new Gauge({ name: 'lowcloud_process_cpu_seconds', help: 'CPU seconds used by the process since it started', labelNames: ['process'], registers: [registry] }),
    memory: new Gauge({ name: 'lowcloud_process_memory_bytes', help: 'Resident memory of the process', labelNames: ['process'], registers: [registry] }),
    disk: new Gauge({ name: 'lowcloud_process_disk_bytes', help: 'What the process\'s writable directory is charged against its disk grant: 4096 bytes per entry plus each distinct file\'s bytes', labelNames: ['process'], registers: [registry] }),
    restarts: new Gauge({ name: 'lowcloud_process_restarts', help: 'Restarts of the process', labelNames: ['process'], registers: [registry] }),
    violations: new Counter({ name: 'lowcloud_process_grant_violations_total', help: 'Times the process was stopped for going past a grant', labelNames: ['process', 'grant'], registers: [registry] }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
