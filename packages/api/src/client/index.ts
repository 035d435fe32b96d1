import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { canonicalJson } from '../digest.js';
import { ErrorCode, LowcloudError } from '../errors.js';
import type { AgentEvent, AgentStatus, Reply, Request } from '../protocol/messages.js';
import { signRequest, verifyBytes, type KeyPair } from '../signing.js';
import type { ProcessSpec } from '../spec.js';

export interface ConnectOptions {
  /** The agent's pinned public key (`ed25519:...`). Without it the agent's identity is not checked. */
  pinnedKey?: string;
  /** The operator or CI key that signs mutating calls. */
  signer?: KeyPair;
  timeoutMs?: number;
}

/** What the agent's handshake proof covers: the client's challenge and the TLS certificate it sees. */
export function helloProofData(challenge: string, binding: string): string {
  return canonicalJson({ purpose: 'lowcloud-agent-hello', challenge, binding });
}

type Pending = { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/**
 * The reference client of the agent protocol, used by `lowcloud apply` and the tests. It trusts an
 * agent only after the agent signs the client's random challenge, bound to the TLS certificate of
 * this very connection, with the pinned key: a self-signed certificate is fine, a stolen one is not.
 */
export class AgentClient {
  agent = '';
  generation = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly streams = new Map<string, (r: Reply) => void>();

  private constructor(
    private readonly ws: WebSocket,
    readonly url: string,
    private readonly opts: ConnectOptions,
  ) {
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('close', () => this.failAll(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: connection closed`)));
    ws.on('error', (err) => this.failAll(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: ${err.message}`, { cause: err })));
  }

  static async connect(url: string, opts: ConnectOptions = {}): Promise<AgentClient> {
    const timeoutMs = opts.timeoutMs ?? 15_000;
    const ws = new WebSocket(url, { rejectUnauthorized: false, handshakeTimeout: timeoutMs, maxPayload: 64 * 2 ** 20 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', (err) => reject(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: ${err.message}`, { cause: err })));
    });
    const client = new AgentClient(ws, url, opts);
    const challenge = randomBytes(24).toString('hex');
    const hello = (await client.send({ type: 'hello', id: randomUUID(), challenge })) as Extract<Reply, { type: 'hello' }>;
    const socket = (ws as unknown as { _socket?: TLSSocket })._socket;
    const cert = socket !== undefined && 'getPeerCertificate' in socket ? socket.getPeerCertificate(false) : null;
    const binding = cert?.raw !== undefined ? createHash('sha256').update(cert.raw).digest('hex') : 'plain';
    if (hello.binding !== binding || !verifyBytes(hello.agent, helloProofData(challenge, binding), hello.proof)) {
      client.close();
      throw new LowcloudError(ErrorCode.AGENT_KEY_MISMATCH, `${url}: the agent could not prove it holds its key for this connection`);
    }
    if (opts.pinnedKey !== undefined && hello.agent !== opts.pinnedKey) {
      client.close();
      throw new LowcloudError(ErrorCode.AGENT_KEY_MISMATCH, `${url}: the agent's key is ${hello.agent}, but the infra file pins ${opts.pinnedKey}`, {
        details: { expected: opts.pinnedKey, actual: hello.agent },
      });
    }
    client.agent = hello.agent;
    client.generation = hello.generation;
    return client;
  }

  async status(): Promise<AgentStatus> {
    return (await this.call({ type: 'status', id: randomUUID() })) as unknown as AgentStatus;
  }

  start(spec: ProcessSpec): Promise<Record<string, unknown>> {
    return this.call({ type: 'start', id: randomUUID(), spec });
  }

  stop(process: string, graceMs?: number): Promise<Record<string, unknown>> {
    return this.call({ type: 'stop', id: randomUUID(), process, ...(graceMs === undefined ? {} : { graceMs }) });
  }

  replaceConfig(process: string, config: Record<string, string>, specDigest: string): Promise<Record<string, unknown>> {
    return this.call({ type: 'replace-config', id: randomUUID(), process, config, specDigest });
  }

  /** Which of these blobs the agent has, and how far partial uploads got. */
  async blobStatus(digests: string[]): Promise<{ present: string[]; partial: Record<string, number> }> {
    return (await this.call({ type: 'blob-status', id: randomUUID(), digests })) as { present: string[]; partial: Record<string, number> };
  }

  /** Upload a blob in chunks, resuming where an earlier attempt stopped. */
  async putBlob(digest: string, bytes: Uint8Array, chunkSize = 512 * 1024): Promise<void> {
    const st = await this.blobStatus([digest]);
    if (st.present.includes(digest)) return;
    let offset = st.partial[digest] ?? 0;
    do {
      const chunk = bytes.subarray(offset, offset + chunkSize);
      await this.call({ type: 'put-blob', id: randomUUID(), digest, size: bytes.length, offset, data: Buffer.from(chunk).toString('base64') });
      offset += chunk.length;
    } while (offset < bytes.length);
  }

  /** Tail (and optionally follow) a process's log; returns a function that stops following. */
  async logs(process: string, opts: { tail?: number; follow?: boolean }, onLine: (line: string) => void): Promise<() => void> {
    const id = randomUUID();
    this.streams.set(id, (r) => r.type === 'log' && onLine(r.line));
    await this.call({ type: 'logs', id, process, ...opts });
    return () => this.streams.delete(id);
  }

  async watch(onEvent: (e: AgentEvent) => void): Promise<() => void> {
    const id = randomUUID();
    this.streams.set(id, (r) => r.type === 'event' && onEvent(r.event));
    await this.call({ type: 'watch', id });
    return () => this.streams.delete(id);
  }

  /** Send a request, signing it when it mutates state; resolves with the result or throws its error. */
  async call(req: Request): Promise<Record<string, unknown>> {
    const mutating = req.type === 'start' || req.type === 'stop' || req.type === 'replace-config' || req.type === 'put-blob';
    if (mutating) {
      if (this.opts.signer === undefined) throw new LowcloudError(ErrorCode.UNAUTHENTICATED, `${req.type} needs a signing key (--key)`);
      (req as { auth?: unknown }).auth = signRequest(req, this.agent, this.generation, this.opts.signer);
    }
    const reply = await this.send(req);
    if (reply.type !== 'result') throw new LowcloudError(ErrorCode.INTERNAL, `unexpected reply ${reply.type}`);
    this.generation = reply.generation;
    return reply.result;
  }

  /** Send raw text (tests of malformed input use this). */
  sendRaw(text: string | Buffer): void {
    this.ws.send(text);
  }

  close(): void {
    this.ws.close();
  }

  /** Called once when the connection ends (the agent went away, or `close()`). */
  onClose(listener: () => void): void {
    if (this.ws.readyState === this.ws.CLOSED) listener();
    else this.ws.once('close', listener);
  }

  private send(req: Request): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req.id);
        reject(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${this.url}: no answer to ${req.type} within ${this.opts.timeoutMs ?? 15_000} ms`));
      }, this.opts.timeoutMs ?? 15_000);
      this.pending.set(req.id, { resolve, reject, timer });
      this.ws.send(JSON.stringify(req), (err) => {
        if (err !== undefined && err !== null) this.fail(req.id, new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${this.url}: ${err.message}`));
      });
    });
  }

  private onMessage(text: string): void {
    let reply: Reply;
    try {
      reply = JSON.parse(text) as Reply;
    } catch {
      return;
    }
    if (reply.type === 'event' || reply.type === 'log') {
      this.streams.get(reply.id)?.(reply);
      return;
    }
    const id = reply.id;
    const p = id === null ? undefined : this.pending.get(id);
    if (p === undefined || id === null) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (reply.type === 'error') {
      p.reject(new LowcloudError(reply.error.code as ErrorCode, reply.error.message, reply.error.details === undefined ? undefined : { details: reply.error.details }));
    } else p.resolve(reply);
  }

  private fail(id: string, err: Error): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.reject(err);
  }

  private failAll(err: Error): void {
    for (const id of [...this.pending.keys()]) this.fail(id, err);
  }
}
