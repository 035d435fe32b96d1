import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  bodyDigest,
  ErrorCode,
  LowcloudError,
  parseRequest,
  signBytes,
  specDigest,
  toWireError,
  type AgentEvent,
  type AgentStatus,
  type KeyPair,
  type ProcessSpec,
  type ProcessStatus,
  type Reply,
  type Request,
} from '@lowcloud/api';
import { helloProofData } from '@lowcloud/api/client';
import { probeCapabilities, sweepStaleFirewalls } from '@lowcloud/sandbox';
import { AuditLog } from './audit-log.js';
import { withCrashPoints } from './test-hooks.js';
import { RequestAuthenticator } from './auth.js';
import { BlobStore } from './blob-store.js';
import { systemClock, type Clock } from './clock.js';
import { writeFileDurable } from './durable.js';
import { loadOrCreateCertificate, loadOrCreateIdentity } from './identity.js';
import { createMetrics, type Metrics } from './metrics.js';
import { processPaths, SandboxRunner } from './runner.js';
import { StateStore } from './state-store.js';
import { UsageMonitor } from './usage.js';
import { DEFAULT_BACKOFF, ProcessSupervisor, type BackoffPolicy } from './supervisor.js';
import { DEFAULT_LOG_LIMITS, LogBudget, streamLog, type LogLimits } from './logs.js';

export interface AgentOptions {
  host: string;
  port: number;
  stateDir: string;
  /** Public keys (`ed25519:...`) allowed to make mutating calls. */
  trusted: string[];
  /** Plain ws:// (loopback only); otherwise wss:// with a self-signed certificate. */
  insecureLoopback: boolean;
  backoff?: BackoffPolicy;
  clock?: Clock;
  defaultGraceMs?: number;
  logs?: LogLimits;
  /** How often the guests' data directories are walked for `status` (default 10 s). */
  diskIntervalMs?: number;
}

/** A message larger than this gets FRAME_TOO_LARGE (the connection stays); far larger ones close it. */
export const SOFT_FRAME_LIMIT = 2 * 2 ** 20;
const HARD_FRAME_LIMIT = 16 * 2 ** 20;

export class Agent {
  readonly identity: KeyPair;
  private readonly state: StateStore;
  private readonly blobs: BlobStore;
  private readonly audit: AuditLog;
  private readonly auth: RequestAuthenticator;
  private readonly runner: SandboxRunner;
  private readonly logBudget: LogBudget;
  private readonly usage: UsageMonitor;
  private readonly supervisors = new Map<string, ProcessSupervisor>();
  private readonly watchers = new Set<(e: AgentEvent) => void>();
  private readonly metrics: Metrics = createMetrics();
  private readonly startedAt = new Date().toISOString();
  private server: http.Server | https.Server | null = null;
  private wss: WebSocketServer | null = null;
  private binding = 'plain';
  /** Mutating calls run one at a time: each is checked against, and moves, the generation. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: AgentOptions) {
    fs.mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
    this.identity = loadOrCreateIdentity(opts.stateDir);
    this.state = new StateStore(opts.stateDir);
    this.blobs = new BlobStore(opts.stateDir);
    this.audit = new AuditLog(path.join(opts.stateDir, 'audit.log'), this.identity, (m) => process.stderr.write(`${m}\n`));
    this.auth = new RequestAuthenticator(this.identity.publicKey, new Set(opts.trusted), () => (opts.clock ?? systemClock).now());
    const logs = opts.logs ?? DEFAULT_LOG_LIMITS;
    this.runner = new SandboxRunner(opts.stateDir, this.blobs, logs);
    this.logBudget = new LogBudget(path.join(opts.stateDir, 'logs'), logs.totalBytes);
    this.usage = new UsageMonitor(() => this.diskTargets(), opts.diskIntervalMs);
  }

  get url(): string {
    const addr = this.server?.address() as AddressInfo | null;
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `${this.opts.insecureLoopback ? 'ws' : 'wss'}://${host}:${addr?.port ?? this.opts.port}`;
  }

  async start(): Promise<void> {
    await this.reconcile();
    this.logBudget.start();
    this.usage.start();
    // And those that exit later while no agent watched them (between an agent crash and restart).
    setInterval(() => sweepStaleFirewalls(), 5 * 60_000).unref();
    const onHttp = (req: http.IncomingMessage, res: http.ServerResponse) => void this.serveHttp(req, res);
    if (this.opts.insecureLoopback) {
      this.server = http.createServer(onHttp);
    } else {
      const tls = loadOrCreateCertificate(this.opts.stateDir);
      this.binding = createHash('sha256').update(new X509Certificate(tls.cert).raw).digest('hex');
      this.server = https.createServer({ cert: tls.cert, key: tls.key }, onHttp);
    }
    const wss = new WebSocketServer({ server: this.server, maxPayload: HARD_FRAME_LIMIT });
    this.wss = wss;
    wss.on('connection', (ws) => this.serveConnection(ws));
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(this.opts.port, this.opts.host, () => resolve());
    });
  }

  /** Stop listening; guests keep running (they are detached) and the next agent re-attaches. */
  async close(): Promise<void> {
    for (const s of this.supervisors.values()) s.handle?.detach();
    this.logBudget.stop();
    this.usage.stop();
    // Followers (logs --follow, events) hold connections open; the server closes only without them.
    for (const ws of this.wss?.clients ?? []) ws.close(1001, 'agent shutting down');
    const closed = new Promise((r) => this.server?.close(r));
    setTimeout(() => this.wss?.clients.forEach((ws) => ws.terminate()), 1000).unref();
    await closed;
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
  }

  private supervisor(name: string, spec: ProcessSpec, digest: string): ProcessSupervisor {
    const restarts = Number(readText(path.join(processPaths(this.opts.stateDir, name).runDir, 'restarts')) ?? 0);
    const sup = new ProcessSupervisor(name, spec, digest, {
      runner: this.runner,
      clock: this.opts.clock ?? systemClock,
      backoff: this.opts.backoff ?? DEFAULT_BACKOFF,
      emit: (e) => this.emit(e),
      saveRestarts: (n, count) => {
        const dir = processPaths(this.opts.stateDir, n).runDir;
        fs.mkdirSync(dir, { recursive: true });
        writeFileDurable(path.join(dir, 'restarts'), String(count));
      },
    }, restarts);
    this.supervisors.set(name, sup);
    return sup;
  }

  private emit(e: AgentEvent): void {
    if (e.kind === 'grant-violated') this.metrics.violations.inc({ process: e.process, grant: (e.detail ?? '').split(':')[0] ?? 'unknown' });
    for (const w of this.watchers) w(e);
  }

  private serveConnection(ws: WebSocket): void {
    const streams: (() => void)[] = [];
    const send = (r: Reply) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(r));
    };
    ws.on('close', () => streams.forEach((s) => s()));
    ws.on('message', (data, isBinary) => {
      const size = (data as Buffer).length;
      if (isBinary || size > SOFT_FRAME_LIMIT) {
        this.metrics.calls.inc({ type: 'unknown', result: isBinary ? ErrorCode.BAD_MESSAGE : ErrorCode.FRAME_TOO_LARGE });
        send({ type: 'error', id: null, error: isBinary ? { code: ErrorCode.BAD_MESSAGE, message: 'binary frames are not part of the protocol' } : { code: ErrorCode.FRAME_TOO_LARGE, message: `a message may be at most ${SOFT_FRAME_LIMIT} bytes (got ${size}); upload blobs in chunks` } });
        return;
      }
      let req: Request;
      let id: string | null = null;
      try {
        const value: unknown = JSON.parse(String(data));
        if (value !== null && typeof value === 'object' && typeof (value as { id?: unknown }).id === 'string') id = (value as { id: string }).id;
        req = parseRequest(value);
      } catch (err) {
        const e = err instanceof SyntaxError ? { code: ErrorCode.BAD_MESSAGE, message: `malformed JSON: ${err.message}` } : toWireError(err);
        this.metrics.calls.inc({ type: 'unknown', result: e.code });
        send({ type: 'error', id, error: e });
        return;
      }
      void this.dispatch(req, send, streams).then(
        (reply) => {
          this.metrics.calls.inc({ type: req.type, result: 'ok' });
          if (reply !== null) send(reply);
        },
        (err: unknown) => {
          const e = toWireError(err);
          this.metrics.calls.inc({ type: req.type, result: e.code });
          send({ type: 'error', id: req.id, error: e });
        },
      );
    });
  }

  private result(id: string, result: Record<string, unknown>): Reply {
    return { type: 'result', id, generation: this.state.generation, result };
  }

  private async dispatch(req: Request, send: (r: Reply) => void, streams: (() => void)[]): Promise<Reply | null> {
    switch (req.type) {
      case 'hello':
        return { type: 'hello', id: req.id, agent: this.identity.publicKey, generation: this.state.generation, binding: this.binding, proof: signBytes(this.identity.privateKey, helloProofData(req.challenge, this.binding)) };
      case 'status':
        return this.result(req.id, (await this.status()) as unknown as Record<string, unknown>);
      case 'blob-status': {
        const partial: Record<string, number> = {};
        for (const d of req.digests) {
          const n = this.blobs.partialSize(d);
          if (n !== undefined) partial[d] = n;
        }
        return this.result(req.id, { present: req.digests.filter((d) => this.blobs.has(d)), partial });
      }
      case 'logs': {
        if (this.supervisors.get(req.process) === undefined) throw new LowcloudError(ErrorCode.NOT_FOUND, `no process ${req.process} on this agent`);
        const file = processPaths(this.opts.stateDir, req.process).log;
        // The connection may close while the tail is read: stop the follower then too.
        let stop: (() => void) | null = null;
        let closed = false;
        streams.push(() => {
          closed = true;
          stop?.();
        });
        stop = await streamLog(file, { tail: req.tail ?? 100, follow: req.follow === true }, (line) => send({ type: 'log', id: req.id, line }));
        if (closed) stop();
        return this.result(req.id, {});
      }
      case 'watch': {
        const w = (event: AgentEvent) => send({ type: 'event', id: req.id, event });
        this.watchers.add(w);
        streams.push(() => this.watchers.delete(w));
        return this.result(req.id, {});
      }
      default:
        return this.serialized(() => withCrashPoints(req.type, () => this.mutate(req)));
    }
  }

  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async mutate(req: Request): Promise<Reply> {
    const auth = this.auth.check(req, this.state.generation);
    const record = (process?: string, blob?: { digest: string; offset: number; bytes: number; complete: boolean }) =>
      this.audit.append({ key: auth.key, type: req.type, body: bodyDigest(req), generation: this.state.generation, ...(process === undefined ? {} : { process }), ...(blob === undefined ? {} : { blob }) });
    switch (req.type) {
      case 'put-blob': {
        const data = Buffer.from(req.data, 'base64');
        const complete = this.blobs.put(req.digest, req.size, req.offset, data);
        // Every accepted chunk, not only the last: a partial upload leaves a trace too.
        record(undefined, { digest: req.digest, offset: req.offset, bytes: data.length, complete });
        return this.result(req.id, { complete });
      }
      case 'start': {
        const digest = specDigest(req.spec);
        const cur = this.state.processes[req.spec.name];
        const sup = this.supervisors.get(req.spec.name);
        if (cur !== undefined && cur.specDigest === digest && sup !== undefined && sup.state !== 'stopped') return this.result(req.id, { changed: false });
        if (cur !== undefined && cur.specDigest !== digest) {
          throw new LowcloudError(ErrorCode.INVALID_INPUT, `process ${req.spec.name} runs with another spec (${cur.specDigest.slice(0, 12)}); stop it first, or use replace-config for config changes`);
        }
        const missing = [req.spec.binary, ...Object.values(req.spec.config)].filter((d) => !this.blobs.has(d));
        if (missing.length > 0) throw new LowcloudError(ErrorCode.BLOB_MISSING, `upload these blobs first: ${missing.join(', ')}`, { details: { missing } });
        record(req.spec.name);
        this.state.set(req.spec);
        const s = this.supervisor(req.spec.name, req.spec, digest);
        await s.start();
        return this.result(req.id, { changed: true, pid: s.handle?.pid ?? null });
      }
      case 'stop': {
        const sup = this.supervisors.get(req.process);
        if (this.state.processes[req.process] === undefined && sup === undefined) return this.result(req.id, { changed: false });
        record(req.process);
        this.state.remove(req.process);
        await sup?.stop(req.graceMs ?? this.opts.defaultGraceMs ?? 5000);
        this.supervisors.delete(req.process);
        return this.result(req.id, { changed: true });
      }
      case 'replace-config': {
        const cur = this.state.processes[req.process];
        const sup = this.supervisors.get(req.process);
        if (cur === undefined || sup === undefined) throw new LowcloudError(ErrorCode.NOT_FOUND, `no process ${req.process} on this agent`);
        const spec = { ...cur.spec, config: req.config };
        const digest = specDigest(spec);
        if (digest !== req.specDigest) {
          throw new LowcloudError(ErrorCode.INVALID_INPUT, `replace-config ${req.process}: the new config gives spec ${digest.slice(0, 12)}, the call expects ${req.specDigest.slice(0, 12)}; only config may change this way`);
        }
        if (digest === cur.specDigest) return this.result(req.id, { changed: false });
        const missing = Object.values(req.config).filter((d) => !this.blobs.has(d));
        if (missing.length > 0) throw new LowcloudError(ErrorCode.BLOB_MISSING, `upload these blobs first: ${missing.join(', ')}`, { details: { missing } });
        record(req.process);
        this.state.set(spec);
        await sup.replace(spec, digest, this.opts.defaultGraceMs ?? 5000);
        return this.result(req.id, { changed: true, pid: sup.handle?.pid ?? null });
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
        spec: desired.spec,
        specDigest: desired.specDigest,
        state: s?.state ?? 'stopped',
        pid: s?.handle?.pid ?? null,
        restarts: s?.restarts ?? 0,
        lastExit: (s?.lastExit as Record<string, unknown> | null) ?? null,
        enforcement: (s?.handle?.report as unknown as ProcessStatus['enforcement']) ?? null,
        usage,
        nextRestart: s?.nextRestartAt === null || s?.nextRestartAt === undefined ? null : new Date(s.nextRestartAt).toISOString(),
      });
    }
    return { agent: this.identity.publicKey, generation: this.state.generation, startedAt: this.startedAt, capabilities: { ...(await probeCapabilities()) }, processes };
  }

  /** The data directory of every running guest with a disk grant (what the usage monitor walks). */
  private diskTargets(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [name, s] of this.supervisors) if (s.handle !== null && s.spec.grants.disk !== undefined) out.set(name, processPaths(this.opts.stateDir, name).dataDir);
    return out;
  }

  private async serveHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.url === '/metrics') {
      await this.status();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(await this.metrics.registry.metrics());
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('lowcloud agent: connect with a WebSocket client (lowcloud apply / status); metrics at /metrics\n');
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

