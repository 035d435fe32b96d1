import { randomBytes, randomFillSync, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { sha256Hex } from '../digest.js';
import { ErrorCode, LowcloudError } from '../errors.js';
import { BLOB_CHUNK_BYTES, encodeBlobFrame } from '../protocol/blob-frame.js';
import { channelBinding, helloProofData } from '../protocol/handshake.js';
import { MAX_BATCH_CALLS, requiredRole, type AgentEvent, type AgentStatus, type BatchedCall, type Reply, type Request, type RequestOf, type RequestType, type Results, type Role } from '../protocol/messages.js';
import { parseReply, parseResult } from '../protocol/replies.js';
import { signRequest, verifyBytes, type KeyPair } from '../signing.js';
import type { ProcessSpec } from '../spec.js';

/** put-blob calls in flight per upload. */
const BLOB_WINDOW = 3;

export interface ConnectOptions {
  /** The agent's pinned public key (`ed25519:...`). Without it the agent's identity is not checked. */
  pinnedKey?: string;
  /** The operator or CI key that signs every call (`hello` aside). Without it only `hello` works. */
  signer?: KeyPair;
  /**
   * How long the agent may stay silent (default 15 s): the connection's set-up must finish within
   * it, and a call fails with AGENT_UNREACHABLE once it waited that long with no reply to any call
   * of this connection. Silence, not a call's age: calls pipelined behind slow ones (64 guest starts
   * on a loaded machine) are answered in turn, each reply showing the agent is at work.
   */
  timeoutMs?: number;
  /** Sent as the `Origin` header (tests of the agent's browser check). */
  origin?: string;
  /**
   * Do not wait for the reply to `authenticate` (sent once the agent proved its key): connect
   * resolves a round trip sooner and `role` is set when the reply comes.
   */
  pipelineAuthenticate?: boolean;
  /**
   * Calls in flight on this connection at most (default 64): more calls made at once wait for a
   * reply first. Calls made without waiting for each other are pipelined: the agent takes them in
   * the order they were sent.
   */
  window?: number;
}

/** Calls in flight on one connection unless `window` says otherwise. */
export const DEFAULT_WINDOW = 64;

/** A call waiting for its answer; `since`: when it was sent (`performance.now()`). */
type Pending = { type: RequestType; resolve: (r: Reply) => void; reject: (e: Error) => void; since: number };

/** A state-changing call made and not yet sent: it goes in the next `batch` (see `flushBatch`). */
type Batched = { req: BatchedCall; text: string; generation: number; resolve: (r: Reply) => void; reject: (e: Error) => void };

/**
 * A batch's JSON text stays under this (the agent takes messages of 16 MiB by default; its limit
 * can be set lower): a call that would take it past goes in the next batch.
 */
const BATCH_BYTES = 2 ** 20;

/**
 * The reference client of the agent protocol, used by `lowcloud apply` and the tests. It trusts an
 * agent only after the agent signs the client's random challenge, bound to this very connection
 * (see `channelBinding`), with the pinned key: a self-signed certificate is fine, a relay is not.
 * With a signer it then authenticates the connection (the agent accepts only small frames before)
 * and signs every call. Every reply is checked against the protocol's schema before it is used.
 */
export class AgentClient {
  agent = '';
  generation = 0;
  /** What the signer may do on this agent (after connect with a signer). */
  role: Role | null = null;
  private readonly pending = new Map<string, Pending>();
  /** The connection's one timer of the agent's silence (`armSilence`), while calls wait. */
  private silence: NodeJS.Timeout | null = null;
  /** When the last reply came (`performance.now()`). */
  private lastReply = 0;
  private readonly streams = new Map<string, (r: Reply) => void>();
  private closedBy: string | null = null;
  /** Places of the window taken, and the calls waiting for one, first come first sent. */
  private held = 0;
  private readonly waiting: (() => void)[] = [];
  /** State-changing calls sent and not yet answered, and the generation the next one is signed with. */
  private writesInFlight = 0;
  private nextGeneration = 0;
  /** The most calls the agent takes in one `batch` (its hello says; 0: an agent before batches). */
  private batchMax = 0;
  /** State-changing calls made in this turn, sent together when it ends (`flushBatch`). */
  private batch: Batched[] = [];
  private batchBytes = 0;

  private constructor(
    private readonly ws: WebSocket,
    readonly url: string,
    private readonly opts: ConnectOptions,
  ) {
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('close', (code, reason) => {
      this.closedBy = code === 1005 || code === 1000 ? 'connection closed' : `connection closed by the agent (${code}${reason.length > 0 ? `: ${String(reason)}` : ''})`;
      this.failAll(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: ${this.closedBy}`));
    });
    ws.on('error', (err) => this.failAll(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: ${err.message}`, { cause: err })));
  }

  static async connect(url: string, opts: ConnectOptions = {}): Promise<AgentClient> {
    const timeoutMs = opts.timeoutMs ?? 15_000;
    // TLS 1.3 only: its exporter is bound to the whole handshake (TLS 1.2's needs extended master secret).
    // RFC 6455 masks what a client sends so that a browser script's bytes cannot be read as HTTP by a
    // proxy on the way. Under TLS no proxy reads them (and one that terminates TLS fails the channel
    // binding below), and on loopback there is none: there the key is all zeros, which ws sends
    // without the XOR and without copying each frame (the upload of 200 MB of blobs cost the CLI
    // 0.7 s of CPU in both). Anywhere else, a fresh random key per frame, as ws does by default.
    let unmasked = false;
    const generateMask = (mask: Buffer) => (unmasked ? mask.fill(0) : randomFillSync(mask));
    const ws = new WebSocket(url, { rejectUnauthorized: false, minVersion: 'TLSv1.3', handshakeTimeout: timeoutMs, maxPayload: 64 * 2 ** 20, generateMask, ...(opts.origin === undefined ? {} : { origin: opts.origin }) });
    let socket: Socket | null = null;
    ws.once('upgrade', (res: IncomingMessage) => {
      socket = res.socket;
      unmasked = noProxyBetween(res.socket);
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', (err) => {
        // Closed before any handshake: most often the agent's per-address limits (connection rate, count).
        const hint = (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? ' (the agent closed the connection at once: it may be limiting new connections from this address, see lowcloud agent --connect-rate; retry in a few seconds)' : '';
        reject(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: ${err.message}${hint}`, { cause: err }));
      });
      ws.once('unexpected-response', (_req, res) => {
        ws.terminate();
        reject(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: the agent refused the connection (HTTP ${res.statusCode ?? '?'} ${res.statusMessage ?? ''})`.trimEnd()));
      });
    });
    const client = new AgentClient(ws, url, opts);
    try {
      if (socket === null) throw new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${url}: no socket after the upgrade`);
      const challenge = randomBytes(24).toString('hex');
      const hello = (await client.send({ type: 'hello', id: randomUUID(), challenge })) as Extract<Reply, { type: 'hello' }>;
      const expected = channelBinding(socket);
      if (hello.binding !== expected.kind || !verifyBytes(hello.agent, helloProofData(challenge, expected.value), hello.proof)) {
        throw new LowcloudError(ErrorCode.AGENT_KEY_MISMATCH, `${url}: the agent could not prove it holds its key on this connection (${expected.kind} binding); something between you and the agent terminates the connection`);
      }
      if (opts.pinnedKey !== undefined && hello.agent !== opts.pinnedKey) {
        throw new LowcloudError(ErrorCode.AGENT_KEY_MISMATCH, `${url}: the agent's key is ${hello.agent}, but the infra file pins ${opts.pinnedKey}`, {
          details: { expected: opts.pinnedKey, actual: hello.agent },
        });
      }
      client.agent = hello.agent;
      client.generation = hello.generation;
      client.batchMax = Math.min(hello.batch ?? 0, MAX_BATCH_CALLS);
      if (opts.signer !== undefined) {
        const auth = client.call({ type: 'authenticate', id: randomUUID() }).then((r) => (client.role = r.role));
        // Pipelined: the calls made next go out behind it and the agent takes them in order; one
        // the agent refuses (a key it does not trust) is refused them too, with the same error.
        if (opts.pipelineAuthenticate === true) auth.catch(() => undefined);
        else await auth;
      }
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  status(): Promise<AgentStatus> {
    return this.call({ type: 'status', id: randomUUID() });
  }

  start(spec: ProcessSpec): Promise<Results['start']> {
    return this.call({ type: 'start', id: randomUUID(), spec });
  }

  stop(process: string, graceMs?: number): Promise<Results['stop']> {
    return this.call({ type: 'stop', id: randomUUID(), process, ...(graceMs === undefined ? {} : { graceMs }) });
  }

  replaceConfig(process: string, config: Record<string, string>, specDigest: string): Promise<Results['replace-config']> {
    return this.call({ type: 'replace-config', id: randomUUID(), process, config, specDigest });
  }

  /** Which of these blobs the agent has, and how far partial uploads got. */
  blobStatus(digests: string[]): Promise<Results['blob-status']> {
    return this.call({ type: 'blob-status', id: randomUUID(), digests });
  }

  /**
   * Upload a blob in chunks, resuming where an earlier attempt stopped. Each chunk is one binary
   * frame (8 MiB of raw bytes after a signed JSON header naming their sha256: no base64, no JSON
   * over the bytes), and up to `window` of them are in flight at once: the agent takes them in
   * order, so a large upload costs its bytes and one fsync, not a round trip per chunk (512 KiB
   * base64 chunks one at a time took 13.6 s for 200 MB, bench/wordcount). One refused chunk (its
   * offset is not where the agent is) refuses the ones behind it; the first error is thrown.
   */
  async putBlob(digest: string, bytes: Uint8Array, chunkSize = BLOB_CHUNK_BYTES, window = BLOB_WINDOW): Promise<void> {
    const st = await this.blobStatus([digest]);
    if (st.present.includes(digest)) return;
    const sends: Promise<unknown>[] = [];
    let offset = st.partial[digest] ?? 0;
    do {
      const chunk = bytes.subarray(offset, offset + Math.min(chunkSize, BLOB_CHUNK_BYTES));
      sends.push(this.call({ type: 'put-blob', id: randomUUID(), digest, size: bytes.length, offset, chunk: { bytes: chunk.length, sha256: sha256Hex(chunk) } }, chunk));
      offset += chunk.length;
      // Bounded memory: wait for the oldest chunk in flight before sending another; stop at a refusal.
      if (sends.length >= window && !(await sends[sends.length - window]?.then(() => true, () => false))) break;
    } while (offset < bytes.length);
    const settled = await Promise.allSettled(sends);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
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

  /**
   * Sign and send a request; resolves with its result, checked against the protocol, or throws its
   * error. A state-changing call is signed with the generation it will meet: the latest the agent
   * reported, plus one for each state-changing call of this connection still in flight before it
   * (the agent takes them in order, each moving the generation by one). One that meets another
   * generation (an earlier one failed or changed nothing, or someone else's call came between) is
   * refused with STALE_GENERATION and changes nothing.
   */
  async call<T extends Exclude<RequestType, 'hello'>>(req: RequestOf<T>, payload?: Uint8Array): Promise<Results[T]> {
    const type = (req as Request).type as T;
    if (this.opts.signer === undefined) throw new LowcloudError(ErrorCode.UNAUTHENTICATED, `${type} needs a signing key (--key): every call but hello is signed`);
    await this.place();
    const write = type !== 'put-blob' && requiredRole(type) === 'write';
    let generation = this.generation;
    if (write) {
      if (this.writesInFlight === 0) this.nextGeneration = this.generation;
      generation = this.nextGeneration++;
      this.writesInFlight++;
    }
    let reply: Reply;
    try {
      if (write && this.batchMax > 1) reply = await this.batched(req as BatchedCall, generation);
      else {
        (req as { auth?: unknown }).auth = signRequest(req, this.agent, generation, this.opts.signer);
        reply = await this.send(req as Request, payload);
      }
    } finally {
      if (write) this.writesInFlight--;
      this.leave();
    }
    if (reply.type !== 'result') throw new LowcloudError(ErrorCode.BAD_REPLY, `${this.url}: ${type} got a ${reply.type} reply`);
    const result = parseResult(type, reply.result);
    // Replies of concurrent calls may cross; the agent's generation only grows.
    this.generation = Math.max(this.generation, reply.generation);
    return result;
  }

  /**
   * A state-changing call goes out with the others made in the same turn of the event loop (an
   * apply's window of calls, made at once): as one `batch` under one signature, or alone if it is
   * the only one. The generations of a batch's calls follow each other (each was given the next).
   */
  private batched(req: BatchedCall, generation: number): Promise<Reply> {
    if (this.closedBy !== null) return Promise.reject(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${this.url}: ${this.closedBy}`));
    const text = JSON.stringify(req);
    if (this.batch.length >= this.batchMax || (this.batch.length > 0 && this.batchBytes + text.length > BATCH_BYTES)) this.flushBatch();
    return new Promise((resolve, reject) => {
      if (this.batch.length === 0) setImmediate(() => this.flushBatch());
      this.batch.push({ req, text, generation, resolve, reject });
      this.batchBytes += text.length + 1;
    });
  }

  /** Send the calls of `batch`: alone, signed, if it is one; else as one signed `batch`. */
  private flushBatch(): void {
    const calls = this.batch;
    if (calls.length === 0) return;
    this.batch = [];
    this.batchBytes = 0;
    const signer = this.opts.signer as KeyPair;
    const first = calls[0] as Batched;
    if (calls.length === 1) {
      const req = first.req as Request;
      (req as { auth?: unknown }).auth = signRequest(req, this.agent, first.generation, signer);
      this.send(req).then(first.resolve, first.reject);
      return;
    }
    const batch = { type: 'batch' as const, id: randomUUID(), calls: calls.map((c) => c.req) };
    const auth = signRequest(batch, this.agent, first.generation, signer);
    const now = performance.now();
    // The batch's own reply (`{ calls }`, or the error that refuses them all) comes first; each
    // call's comes by its id. The text is the calls' as made, not stringified again.
    this.pending.set(batch.id, { type: 'batch', resolve: () => undefined, reject: (err) => calls.forEach((c) => this.fail(c.req.id, err)), since: now });
    for (const c of calls) this.pending.set(c.req.id, { type: c.req.type, resolve: c.resolve, reject: c.reject, since: now });
    this.armSilence();
    const text = `{"type":"batch","id":${JSON.stringify(batch.id)},"calls":[${calls.map((c) => c.text).join(',')}],"auth":${JSON.stringify(auth)}}`;
    this.ws.send(text, (err) => {
      if (err !== undefined && err !== null) this.fail(batch.id, new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${this.url}: ${err.message}`));
    });
  }

  /** Wait for a place in the window of calls in flight. */
  private place(): Promise<void> {
    if (this.held < (this.opts.window ?? DEFAULT_WINDOW)) {
      this.held++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** A call is answered: its place goes to the first one waiting. */
  private leave(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.held--;
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

  /** A put-blob with `payload` goes as one binary frame (`encodeBlobFrame`), everything else as JSON text. */
  private send(req: Request, payload?: Uint8Array): Promise<Reply> {
    if (this.closedBy !== null) return Promise.reject(new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${this.url}: ${this.closedBy}`));
    // What was made before this call goes before it.
    if (this.batch.length > 0) this.flushBatch();
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { type: req.type, resolve, reject, since: performance.now() });
      this.armSilence();
      this.ws.send(payload !== undefined && req.type === 'put-blob' ? encodeBlobFrame(req, payload) : JSON.stringify(req), (err) => {
        if (err !== undefined && err !== null) this.fail(req.id, new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${this.url}: ${err.message}`));
      });
    });
  }

  private onMessage(text: string): void {
    let reply: Reply;
    try {
      reply = parseReply(text);
    } catch (err) {
      // A reply that breaks the protocol fails what it answers (when its id can be read) or everything.
      const id = /"id":"([^"]{1,128})"/.exec(text)?.[1];
      if (id !== undefined && this.pending.has(id)) this.fail(id, err as Error);
      else this.failAll(err as Error);
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
    // The agent answers: the calls still waiting count their silence from now (see `timeoutMs`).
    this.lastReply = performance.now();
    this.disarmIfIdle();
    if (reply.type === 'error') {
      p.reject(new LowcloudError(reply.error.code as ErrorCode, reply.error.message, reply.error.details === undefined ? undefined : { details: reply.error.details }));
    } else p.resolve(reply);
  }

  private fail(id: string, err: Error): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    this.disarmIfIdle();
    p.reject(err);
  }

  /** No call waits: the timer goes (a live one would hold the process up to `timeoutMs` as it ends). */
  private disarmIfIdle(): void {
    if (this.pending.size > 0 || this.silence === null) return;
    clearTimeout(this.silence);
    this.silence = null;
  }

  /**
   * One timer for the connection, not one per call: a call fails when neither its answer nor any
   * other reply came within `timeoutMs` of its sending. Each reply used to refresh the timer of
   * every call still waiting, 500,000 timer moves for the 1,000 calls of an `up` in flight at
   * once; now a reply only notes its time. The calls wait in the order they were sent, so the
   * first one waiting has the earliest deadline.
   */
  private armSilence(): void {
    if (this.silence !== null || this.pending.size === 0) return;
    const first = this.pending.values().next().value as Pending;
    const due = Math.max(first.since, this.lastReply) + (this.opts.timeoutMs ?? 15_000);
    this.silence = setTimeout(() => {
      this.silence = null;
      const now = performance.now();
      for (const [id, p] of this.pending) {
        if (Math.max(p.since, this.lastReply) + (this.opts.timeoutMs ?? 15_000) > now) break;
        this.fail(id, new LowcloudError(ErrorCode.AGENT_UNREACHABLE, `${this.url}: no answer to ${p.type}, and no other reply from the agent, within ${this.opts.timeoutMs ?? 15_000} ms`));
      }
      this.armSilence();
    }, Math.max(0, due - performance.now()));
  }

  private failAll(err: Error): void {
    for (const c of this.batch.splice(0)) c.reject(err);
    this.batchBytes = 0;
    for (const id of [...this.pending.keys()]) this.fail(id, err);
  }
}

/** A TLS connection, or one to a loopback address: nothing between the two ends reads the frames. */
export function noProxyBetween(socket: Socket): boolean {
  if ((socket as Socket & { encrypted?: boolean }).encrypted === true) return true;
  const a = socket.remoteAddress ?? '';
  return a === '::1' || /^(::ffff:)?127\./.test(a);
}
