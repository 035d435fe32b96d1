import fs from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { isolationOf, type KeyPair } from '@lowcloud/api';
import { prewarmSandbox, sweepStaleFirewalls } from '@lowcloud/sandbox';
import { AgentCalls } from './calls.js';
import { AgentCore } from './core.js';
import { loadOrCreateCertificate } from './identity.js';
import { serveMetrics } from './metrics-server.js';
import type { AgentOptions } from './agent-options.js';
import { DEFAULT_LIMITS } from './network-limits.js';
import { AgentListener } from './server.js';

/**
 * The node agent's lifecycle: open the state directory (`AgentCore`), bring the desired state back
 * (reconcile), listen, serve /metrics, and close. Its calls are `AgentCalls`.
 */
export class Agent {
  readonly identity: KeyPair;
  private readonly core: AgentCore;
  private readonly calls: AgentCalls;
  private listener: AgentListener | null = null;
  private metricsServer: http.Server | null = null;

  constructor(private readonly opts: AgentOptions) {
    this.core = new AgentCore(opts);
    this.identity = this.core.identity;
    this.calls = new AgentCalls(this.core);
  }

  get url(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `${this.opts.insecureLoopback ? 'ws' : 'wss'}://${host}:${this.listener?.port ?? this.opts.port}`;
  }

  get metricsUrl(): string | null {
    const addr = this.metricsServer?.address() as AddressInfo | null | undefined;
    if (addr === null || addr === undefined) return null;
    return `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}/metrics`;
  }

  async start(): Promise<void> {
    await this.reconcile();
    this.core.logBudget.start();
    this.core.usage.start();
    // And those that exit later while no agent watched them (between an agent crash and restart).
    setInterval(() => sweepStaleFirewalls(), 5 * 60_000).unref();
    this.listener = new AgentListener({
      host: this.opts.host,
      port: this.opts.port,
      tls: this.opts.insecureLoopback ? null : loadOrCreateCertificate(this.opts.stateDir),
      limits: { ...DEFAULT_LIMITS, ...this.opts.limits },
      allowedOrigins: this.opts.allowedOrigins ?? [],
      connectionHost: this.calls,
      log: (line) => process.stderr.write(`${line}\n`),
      refused: (reason) => this.core.metrics.refused.inc({ reason }),
    });
    const listener = this.listener;
    this.core.network = () => listener.usage();
    await this.listener.listen();
    this.listener.startHeartbeat();
    // What the sandbox learns by running tools (the wall's probe, ldd, which Node.js has JSPI) is
    // found now, off this thread, not synchronously in the first batch of starts.
    void prewarmSandbox();
    if (this.opts.metrics !== null && this.opts.metrics !== undefined) this.metricsServer = await serveMetrics(this.opts.metrics, this.core.metrics, () => this.calls.status());
  }

  /** Stop listening; guests keep running (they are detached) and the next agent re-attaches. */
  async close(): Promise<void> {
    for (const s of this.core.supervisors.values()) s.handle?.detach();
    this.core.logBudget.stop();
    this.core.usage.stop();
    // Followers (logs --follow, events) hold connections open; the listener closes them.
    await Promise.all([this.listener?.close(), new Promise((r) => (this.metricsServer === null ? r(null) : this.metricsServer.close(r)))]);
    // After the listener: no call can ask for a spare any more.
    await this.core.runner.close();
    // What ended guests left, and the veth pairs' shared refusal once no pair is left: after
    // `lowcloud down` the machine keeps no table of lowcloud's.
    sweepStaleFirewalls();
  }

  /** Bring every process of the desired state back: re-attach live guests, start the others. */
  private async reconcile(): Promise<void> {
    // Guests that exited while no agent watched them leave their firewall table behind.
    sweepStaleFirewalls();
    for (const [name, desired] of Object.entries(this.core.state.processes)) {
      const sup = this.core.supervisor(name, desired.spec, desired.specDigest);
      const live = await this.core.runner.attach(name);
      if (live !== null && live.specDigest === desired.specDigest) {
        sup.adopt(live.handle);
        continue;
      }
      if (live !== null) await live.handle.stop(this.opts.defaultGraceMs ?? 5000);
      const exit = live === null ? this.core.runner.exitRecord(name) : null;
      if (exit !== null && exit.kind !== 'stopped') sup.adoptExited(exit);
      else await sup.start().catch((err: unknown) => sup.adoptExited({ kind: 'trap', message: err instanceof Error ? err.message : String(err) }));
    }
    // A guest whose process is not in the desired state: its stop was saved and the agent stopped
    // before carrying it out. It is stopped now.
    let names: string[] = [];
    try {
      names = fs.readdirSync(path.join(this.opts.stateDir, 'run'));
    } catch {
      // no guest ever ran here
    }
    for (const name of names.filter((n) => this.core.state.processes[n] === undefined)) {
      const live = await this.core.runner.attach(name);
      if (live === null) continue;
      await live.handle.stop(this.opts.defaultGraceMs ?? 5000);
      const note = `guest ${name} (pid ${live.handle.pid}) was stopped: its process is not in the desired state (a stop was saved, the agent had stopped before carrying it out)`;
      process.stderr.write(`lowcloud agent: ${note}\n`);
      this.core.recovered.push(note);
    }
    // A spare guest host for each group of `shared` processes it runs: the next start of one
    // (a new process, a restart by policy) joins a running host instead of waiting for a cold one.
    const desired = Object.values(this.core.state.processes);
    for (const d of desired) this.core.runner.warm(d.spec);
    // None of them shared: one warm host for the first shared start (a plan usually follows an agent's start).
    if (!desired.some((d) => isolationOf(d.spec) === 'shared')) this.core.runner.prewarmShared();
  }
}
