import fs from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import {
  bodyDigest,
  helloProofData,
  ErrorCode,
  LowcloudError,
  publicSpec,
  signBytes,
  specDigest,
  type AgentEvent,
  type AgentStatus,
  type KeyPair,
  type ProcessSpec,
  type ProcessStatus,
  type Reply,
  type Request,
  type Results,
  type ResultType,
  type Role,
} from '@lowcloud/api';
import { probeCapabilities, sweepStaleFirewalls } from '@lowcloud/sandbox';
import { AuditLog } from './audit-log.js';
import { withCrashPoints } from './test-hooks.js';
import { RequestAuthenticator } from './auth.js';
import { BlobStore } from './blob-store.js';
import { systemClock, type Clock } from './clock.js';
import type { Caller, Connection, ConnectionHost } from './connection.js';
import { loadOrCreateCertificate, loadOrCreateIdentity } from './identity.js';
import { createMetrics, type Metrics } from './metrics.js';
import { processPaths, SandboxRunner } from './runner.js';
import { DEFAULT_LIMITS, type NetworkLimits } from './network-limits.js';
import { AgentListener } from './server.js';
import { secureStateDir } from './state-dir.js';
import { StateDisk, type StateDiskSpace } from './state-disk.js';
import { StateStore, type CallRecord } from './state-store.js';
import { BlobMissingError, ProcessNotFoundError } from '../errors.js';
import { UsageMonitor } from './usage.js';
import { DEFAULT_BACKOFF, ProcessSupervisor, type BackoffPolicy } from './supervisor.js';
import { DEFAULT_LOG_LIMITS, LogBudget, streamLog, type LogLimits } from './logs.js';

export interface AgentOptions {
  host: string;
  port: number;
  stateDir: string;
  /** Public keys (`ed25519:...`) allowed every call (role `write`). */
  trusted: string[];
  /** Public keys allowed the read calls only (role `read`). */
  trustedRead?: string[];
  /** Web page origins allowed to open a WebSocket (a request with any other Origin gets 403). */
  allowedOrigins?: string[];
  /** Where /metrics is served (plain HTTP); null: nowhere. */
  metrics?: { host: string; port: number } | null;
  limits?: Partial<NetworkLimits>;
  /** Plain ws:// (loopback only); otherwise wss:// with a self-signed certificate. */
  insecureLoopback: boolean;
  backoff?: BackoffPolicy;
  clock?: Clock;
  defaultGraceMs?: number;
  logs?: LogLimits;
  /** How often the guests' data directories are walked for `status` (default 10 s). */
  diskIntervalMs?: number;
  /** The largest blob `put-blob` accepts (default 1 GiB). */
  maxBlobBytes?: number;
  /** Free bytes kept on the state filesystem: new uploads and starts are refused below it (default 1 MiB). */
  stateReserveBytes?: number;
}

export class Agent implements ConnectionHost {
  readonly identity: KeyPair;
  private readonly disk: StateDisk;
  private readonly state: StateStore;
  private readonly blobs: BlobStore;
  private readonly audit: AuditLog;
  private readonly auth: RequestAuthenticator;
  private readonly runner: SandboxRunner;
  private readonly logBudget: LogBudget;
  private readonly usage: UsageMonitor;
  private readonly supervisors = new Map<string, ProcessSupervisor>();
  private readonly watchers = new Set<(e: AgentEvent) => void>();
  private readonly metrics: Metrics = createMetrics(
    () => this.listener?.usage() ?? null,
    () => ({ disk: this.diskSpace(), audit: this.audit.health() }),
  );
  /** What the agent mended when it started (a broken state file, a missing audit line, stray guests). */
  private readonly recovered: string[] = [];
  private readonly startedAt = new Date().toISOString();
  private listener: AgentListener | null = null;
  private metricsServer: http.Server | null = null;
  /** Mutating calls run one at a time: each is checked against, and moves, the generation. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: AgentOptions) {
    secureStateDir(opts.stateDir, (line) => process.stderr.write(`${line}\n`));
    this.identity = loadOrCreateIdentity(opts.stateDir);
    const report = (line: string) => process.stderr.write(`${line}\n`);
    this.disk = new StateDisk(opts.stateDir, opts.stateReserveBytes);
    this.state = new StateStore(opts.stateDir, { disk: this.disk, report });
    if (this.state.recovered !== null) this.recovered.push(this.state.recovered);
    this.blobs = new BlobStore(opts.stateDir, opts.maxBlobBytes, this.disk);
    this.audit = new AuditLog(path.join(opts.stateDir, 'audit.log'), this.identity, report, this.disk);
    const lastLine = this.audit.health().entries;
    this.audit.mend(this.state.lastCall);
    if (this.audit.health().entries > lastLine) this.recovered.push(`audit line ${this.audit.health().entries} (${this.state.lastCall?.type} ${this.state.lastCall?.process ?? ''}): the call was saved, the agent had stopped before its line`);
    const roles = new Map<string, Role>([...(opts.trustedRead ?? []).map((k): [string, Role] => [k, 'read']), ...opts.trusted.map((k): [string, Role] => [k, 'write'])]);
    this.auth = new RequestAuthenticator(this.identity.publicKey, roles, () => (opts.clock ?? systemClock).now());
    const logs = opts.logs ?? DEFAULT_LOG_LIMITS;
    this.runner = new SandboxRunner(opts.stateDir, this.blobs, this.disk, logs);
    this.logBudget = new LogBudget(path.join(opts.stateDir, 'logs'), logs.totalBytes);
    this.usage = new UsageMonitor(() => this.diskTargets(), opts.diskIntervalMs);
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
    this.logBudget.start();
    this.usage.start();
    // And those that exit later while no agent watched them (between an agent crash and restart).
    setInterval(() => sweepStaleFirewalls(), 5 * 60_000).unref();
    this.listener = new AgentListener({
      host: this.opts.host,
      port: this.opts.port,
      tls: this.opts.insecureLoopback ? null : loadOrCreateCertificate(this.opts.stateDir),
      limits: { ...DEFAULT_LIMITS, ...this.opts.limits },
      allowedOrigins: this.opts.allowedOrigins ?? [],
      connectionHost: this,
      log: (line) => process.stderr.write(`${line}\n`),
      refused: (reason) => this.metrics.refused.inc({ reason }),
    });
    await this.listener.listen();
    this.listener.startHeartbeat();
    if (this.opts.metrics !== null && this.opts.metrics !== undefined) await this.serveMetrics(this.opts.metrics);
  }

  /** Stop listening; guests keep running (they are detached) and the next agent re-attaches. */
  async close(): Promise<void> {
    for (const s of this.supervisors.values()) s.handle?.detach();
    this.logBudget.stop();
    this.usage.stop();
    // Followers (logs --follow, events) hold connections open; the listener closes them.
    await Promise.all([this.listener?.close(), new Promise((r) => (this.metricsServer === null ? r(null) : this.metricsServer.close(r)))]);
  }

  /** Bring every process of the desired state back: re-attach live guests, start the others. */
  private async reconcile(): Promise<void> {
    // Guests that exited while no agent watched them leave their firewall table behind.
    sweepStaleFirewalls();
    for (const [name, desired] of Object.entries(this.state.processes)) {
      const sup = this.supervisor(name, desired.spec, desired.specDigest);
      const live = await this.runner.attach(name);
      if (live !== null && live.specDigest === desired.specDigest) {
        sup.adopt(live.handle);
        continue;
      }
      if (live !== null) await live.handle.stop(this.opts.defaultGraceMs ?? 5000);
      const exit = live === null ? this.runner.exitRecord(name) : null;
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
    for (const name of names.filter((n) => this.state.processes[n] === undefined)) {
      const live = await this.runner.attach(name);
      if (live === null) continue;
      await live.handle.stop(this.opts.defaultGraceMs ?? 5000);
      const note = `guest ${name} (pid ${live.handle.pid}) was stopped: its process is not in the desired state (a stop was saved, the agent had stopped before carrying it out)`;
      process.stderr.write(`lowcloud agent: ${note}\n`);
      this.recovered.push(note);
    }
  }

  private supervisor(name: string, spec: ProcessSpec, digest: string): ProcessSupervisor {
    const sup = this.newSupervisor(name, spec, digest);
    this.supervisors.set(name, sup);
    return sup;
  }

  /** A supervisor not yet known to the agent (a start registers it once the call is accepted). */
  private newSupervisor(name: string, spec: ProcessSpec, digest: string): ProcessSupervisor {
    const restarts = Number(readText(path.join(processPaths(this.opts.stateDir, name).runDir, 'restarts')) ?? 0);
    return new ProcessSupervisor(name, spec, digest, {
      runner: this.runner,
      clock: this.opts.clock ?? systemClock,
      backoff: this.opts.backoff ?? DEFAULT_BACKOFF,
      emit: (e) => this.emit(e),
      saveRestarts: (n, count) => {
        // A count that cannot be saved (a full disk) is said, not thrown: the restart goes on.
        try {
          const dir = processPaths(this.opts.stateDir, n).runDir;
          fs.mkdirSync(dir, { recursive: true });
          this.disk.writeFile(path.join(dir, 'restarts'), String(count));
        } catch (err) {
          process.stderr.write(`lowcloud agent: ${n}: restart count ${count} not saved: ${err instanceof Error ? err.message : String(err)}\n`);
        }
      },
    }, restarts);
  }

  private emit(e: AgentEvent): void {
    if (e.kind === 'grant-violated') this.metrics.violations.inc({ process: e.process, grant: e.grant ?? 'unknown' });
    for (const w of this.watchers) w(e);
  }

  hello(req: Extract<Request, { type: 'hello' }>, binding: { kind: 'tls-exporter' | 'none'; value: string }): Reply {
    return { type: 'hello', id: req.id, agent: this.identity.publicKey, generation: this.state.generation, binding: binding.kind, proof: signBytes(this.identity.privateKey, helloProofData(req.challenge, binding.value)) };
  }

  verify(req: Exclude<Request, { type: 'hello' }>): Caller {
    return this.auth.check(req);
  }

  count(type: string, result: string): void {
    this.metrics.calls.inc({ type, result });
  }

  private result<T extends ResultType>(id: string, result: Results[T]): Reply {
    return { type: 'result', id, generation: this.state.generation, result };
  }

  async dispatch(req: Exclude<Request, { type: 'hello' }>, caller: Caller, conn: Connection): Promise<Reply | null> {
    const send = (r: Reply) => conn.send(r);
    switch (req.type) {
      case 'authenticate':
        return this.result<'authenticate'>(req.id, { key: caller.key, role: caller.role });
      case 'status':
        return this.result<'status'>(req.id, await this.status());
      case 'blob-status': {
        // Each digest once (a read key repeating one present digest 10,000 times makes one check).
        const digests = [...new Set(req.digests)];
        const partial: Record<string, number> = {};
        for (const d of digests) {
          const n = this.blobs.partialSize(d);
          if (n !== undefined) partial[d] = n;
        }
        return this.result<'blob-status'>(req.id, { present: digests.filter((d) => this.blobs.has(d)), partial });
      }
      case 'logs': {
        if (this.supervisors.get(req.process) === undefined) throw new ProcessNotFoundError(req.process);
        const file = processPaths(this.opts.stateDir, req.process).log;
        // The connection may close while the tail is read: stop the follower then too.
        let stop: (() => void) | null = null;
        let closed = false;
        const forget = conn.follow(() => {
          closed = true;
          stop?.();
        });
        stop = await streamLog(file, { tail: req.tail ?? 100, follow: req.follow === true }, (line) => send({ type: 'log', id: req.id, line }));
        if (closed) stop();
        else if (req.follow !== true) forget(); // a tail has ended: nothing is followed
        return this.result<'logs'>(req.id, {});
      }
      case 'watch': {
        const w = (event: AgentEvent) => send({ type: 'event', id: req.id, event });
        // Past the connection's limit follow throws: the watcher goes again (as on a closed connection).
        this.watchers.add(w);
        try {
          conn.follow(() => this.watchers.delete(w));
        } catch (err) {
          this.watchers.delete(w);
          throw err;
        }
        return this.result<'watch'>(req.id, {});
      }
      default:
        // A full disk met anywhere in a call (a directory made, the sandbox's files) is STATE_DISK_FULL.
        return this.serialized(() => withCrashPoints(req.type, () => this.disk.guardAsync(req.type, 0, () => this.mutate(req, caller))));
    }
  }

  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The state-changing calls. The order of each, so that a call that is refused changes nothing and
   * a call that is answered is on disk (state file and audit line, both fsynced) first:
   *   1. checks, and the reserve of the state filesystem (not for stop: a stop is always possible);
   *   2. the desired state is written (`state.json`; `state.json.prev` keeps the generation before);
   *   3. what can fail is done (a guest started, replaced; a blob chunk stored);
   *   4. the audit line is appended (whole, or the log is left as it was);
   *   5. what cannot fail is done (a guest stopped), and the call is answered.
   * A failure in 3 or 4 undoes what came before it: the previous state is renamed back (no free
   * space needed) and a guest started by the call is stopped again (a replaced one started again).
   * An agent that dies after 2 finishes the call when it starts (its reconcile converges on the
   * desired state; a missing audit line is appended from the state file's `lastCall`).
   */
  private async mutate(req: Request, caller: Caller): Promise<Reply> {
    RequestAuthenticator.checkGeneration(req, caller.auth, this.state.generation);
    const generation = this.state.generation;
    const call = (process?: string): Omit<CallRecord, 'generation'> => ({ key: caller.key, type: req.type, body: bodyDigest(req), ...(process === undefined ? {} : { process }) });
    const record = (process?: string, blob?: { digest: string; offset: number; bytes: number; complete: boolean }) =>
      this.audit.append({ ...call(process), generation, ...(blob === undefined ? {} : { blob }) });
    const grace = this.opts.defaultGraceMs ?? 5000;
    switch (req.type) {
      case 'put-blob': {
        const data = Buffer.from(req.data, 'base64');
        const stored = this.blobs.has(req.digest);
        if (!stored) this.disk.admit(`put-blob ${req.digest.slice(0, 12)}`, data.length);
        const complete = await this.blobs.put(req.digest, req.size, req.offset, data);
        // Every accepted chunk, not only the last: a partial upload leaves a trace too.
        try {
          record(undefined, { digest: req.digest, offset: req.offset, bytes: data.length, complete });
        } catch (err) {
          if (!stored) this.blobs.undo(req.digest, req.offset);
          throw err;
        }
        return this.result<'put-blob'>(req.id, { complete });
      }
      case 'start': {
        const digest = specDigest(req.spec);
        const cur = this.state.processes[req.spec.name];
        const known = this.supervisors.get(req.spec.name);
        if (cur !== undefined && cur.specDigest === digest && known !== undefined && known.state !== 'stopped') return this.result<'stop'>(req.id, { changed: false });
        if (cur !== undefined && cur.specDigest !== digest) {
          throw new LowcloudError(ErrorCode.INVALID_INPUT, `process ${req.spec.name} runs with another spec (${cur.specDigest.slice(0, 12)}); stop it first, or use replace-config for config changes`);
        }
        const missing = [req.spec.binary, ...Object.values(req.spec.config)].filter((d) => !this.blobs.has(d));
        if (missing.length > 0) throw new BlobMissingError(missing);
        this.disk.admit(`start ${req.spec.name}`, 2 * Buffer.byteLength(JSON.stringify(req.spec)));
        this.state.set(req.spec, call(req.spec.name));
        const s = known ?? this.newSupervisor(req.spec.name, req.spec, digest);
        try {
          await s.start();
        } catch (err) {
          this.state.rollback();
          if (s === known) s.adoptExited({ kind: 'stopped' }); // as it was: stopped
          throw err;
        }
        try {
          record(req.spec.name);
        } catch (err) {
          await s.stop(grace);
          this.state.rollback();
          throw err;
        }
        this.supervisors.set(req.spec.name, s);
        return this.result<'start'>(req.id, { changed: true, pid: s.handle?.pid ?? null });
      }
      case 'stop': {
        const sup = this.supervisors.get(req.process);
        if (this.state.processes[req.process] === undefined && sup === undefined) return this.result<'stop'>(req.id, { changed: false });
        this.state.remove(req.process, call(req.process));
        try {
          record(req.process);
        } catch (err) {
          this.state.rollback();
          throw err;
        }
        await sup?.stop(grace);
        this.supervisors.delete(req.process);
        return this.result<'stop'>(req.id, { changed: true });
      }
      case 'replace-config': {
        const cur = this.state.processes[req.process];
        const sup = this.supervisors.get(req.process);
        if (cur === undefined || sup === undefined) throw new ProcessNotFoundError(req.process);
        const spec = { ...cur.spec, config: req.config };
        const digest = specDigest(spec);
        if (digest !== req.specDigest) {
          throw new LowcloudError(ErrorCode.INVALID_INPUT, `replace-config ${req.process}: the new config gives spec ${digest.slice(0, 12)}, the call expects ${req.specDigest.slice(0, 12)}; only config may change this way`);
        }
        if (digest === cur.specDigest) return this.result<'stop'>(req.id, { changed: false });
        const missing = Object.values(req.config).filter((d) => !this.blobs.has(d));
        if (missing.length > 0) throw new BlobMissingError(missing);
        this.disk.admit(`replace-config ${req.process}`, 2 * Buffer.byteLength(JSON.stringify(spec)));
        this.state.set(spec, call(req.process));
        // Refused after the old guest was stopped: the old spec runs again (or its restart policy takes over).
        const revert = async (err: unknown): Promise<never> => {
          this.state.rollback();
          await sup.replace(cur.spec, cur.specDigest, grace).catch((e: unknown) => sup.adoptExited({ kind: 'trap', message: e instanceof Error ? e.message : String(e) }));
          throw err;
        };
        await sup.replace(spec, digest, grace).catch(revert);
        try {
          record(req.process);
        } catch (err) {
          await revert(err);
        }
        return this.result<'replace-config'>(req.id, { changed: true, pid: sup.handle?.pid ?? null });
      }
      default:
        throw new LowcloudError(ErrorCode.BAD_MESSAGE, `unexpected ${req.type}`);
    }
  }

  async status(): Promise<AgentStatus> {
    const processes: ProcessStatus[] = [];
    for (const [name, desired] of Object.entries(this.state.processes)) {
      const s = this.supervisors.get(name);
      const usage = s?.handle !== null && s?.handle !== undefined ? this.usage.of(name, s.handle.pid) : null;
      if (usage !== null) {
        this.metrics.cpu.set({ process: name }, usage.cpuSeconds);
        this.metrics.memory.set({ process: name }, usage.memoryBytes);
        this.metrics.disk.set({ process: name }, usage.diskBytes);
      }
      this.metrics.restarts.set({ process: name }, s?.restarts ?? 0);
      processes.push({
        name,
        spec: publicSpec(desired.spec),
        specDigest: desired.specDigest,
        state: s?.state ?? 'stopped',
        pid: s?.handle?.pid ?? null,
        restarts: s?.restarts ?? 0,
        lastExit: s?.lastExit ?? null,
        enforcement: s?.handle?.report ?? null,
        usage,
        nextRestart: s?.nextRestartAt === null || s?.nextRestartAt === undefined ? null : new Date(s.nextRestartAt).toISOString(),
      });
    }
    const stateDisk = this.diskSpace();
    return {
      agent: this.identity.publicKey,
      generation: this.state.generation,
      startedAt: this.startedAt,
      capabilities: await probeCapabilities(),
      processes,
      ...(stateDisk === null ? {} : { stateDisk }),
      audit: this.audit.health(),
      recovered: this.recovered,
    };
  }

  /** The state filesystem's free space, or null when it cannot be asked (statfs failing). */
  private diskSpace(): StateDiskSpace | null {
    try {
      return this.disk.space();
    } catch {
      return null;
    }
  }

  /** The data directory of every running guest with a disk grant (what the usage monitor walks). */
  private diskTargets(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [name, s] of this.supervisors) if (s.handle !== null && s.spec.grants.disk !== undefined) out.set(name, processPaths(this.opts.stateDir, name).dataDir);
    return out;
  }

  /** /metrics on its own listener (loopback by default): process names and usage are for the operator. */
  private async serveMetrics(at: { host: string; port: number }): Promise<void> {
    const loopback = /^(127\.|::1$|localhost$)/.test(at.host);
    const server = http.createServer((req, res) => {
      // On loopback, a Host that is a name is a web page that rebound its DNS name to 127.0.0.1.
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      if (loopback && net.isIP(host) === 0 && host !== 'localhost') {
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.end('lowcloud agent: metrics on loopback answer only requests for an IP address or localhost\n');
        return;
      }
      if (req.url !== '/metrics' || req.method !== 'GET') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('lowcloud agent: metrics at /metrics\n');
        return;
      }
      void this.status()
        .then(() => this.metrics.registry.metrics())
        .then(
          (text) => {
            res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
            res.end(text);
          },
          (err: unknown) => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
          },
        );
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new LowcloudError(ErrorCode.INVALID_INPUT, `--metrics-listen ${at.host}:${at.port}: ${err.message} (give another address, or off)`)));
      server.listen(at.port, at.host, () => resolve());
    });
    server.on('error', (err) => process.stderr.write(`metrics listener error: ${err.message}\n`));
    this.metricsServer = server;
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

