import { Counter, Gauge, Registry } from 'prom-client';

/** The agent's Prometheus metrics, served at /metrics. */
export function createMetrics() {
  const registry = new Registry();
  const startedAt = Date.now();
  return {
    registry,
    uptime: new Gauge({ name: 'lowcloud_agent_uptime_seconds', help: 'Seconds since the agent started', registers: [registry], collect() { this.set((Date.now() - startedAt) / 1000); } }),
    calls: new Counter({ name: 'lowcloud_agent_calls_total', help: 'API calls by type and result', labelNames: ['type', 'result'], registers: [registry] }),
    cpu: new Gauge({ name: 'lowcloud_process_cpu_seconds', help: 'CPU seconds used by the process since it started', labelNames: ['process'], registers: [registry] }),
    memory: new Gauge({ name: 'lowcloud_process_memory_bytes', help: 'Resident memory of the process', labelNames: ['process'], registers: [registry] }),
    disk: new Gauge({ name: 'lowcloud_process_disk_bytes', help: 'Bytes in the process\'s writable directory', labelNames: ['process'], registers: [registry] }),
    restarts: new Gauge({ name: 'lowcloud_process_restarts', help: 'Restarts of the process', labelNames: ['process'], registers: [registry] }),
    violations: new Counter({ name: 'lowcloud_process_grant_violations_total', help: 'Times the process was stopped for going past a grant', labelNames: ['process', 'grant'], registers: [registry] }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
