import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { channelBinding, ErrorCode, LowcloudError, readBlobFrame, toWireError, type Reply, type Request, type RequestAuth, type Role } from '@lowcloud/api';
import { parseBlobFrame, parseRequest } from '@lowcloud/api/requests';
import { TooManyFollowedError } from '../errors.js';
import type { NetworkLimits } from './network-limits.js';

/**
 * A message larger than this gets FRAME_TOO_LARGE (the connection stays); far larger ones close it.
 * Above the client's put-blob chunk (8 MiB, 10.7 MiB as base64, plus the call around it).
 */
export const SOFT_FRAME_LIMIT = 12 * 2 ** 20;
/** Past this many bytes queued to one peer, each send checks the total queued for every peer. */
const SEND_QUEUE_CHECK_BYTES = 2 ** 20;
/** Logs and event streams one connection may follow at once. */
export const MAX_FOLLOWED = 64;

/** One TCP connection, from accept on; a WebSocket `Connection` once upgraded. */
export interface Peer {
  /** Its address groups, narrowest first (addressGroups: the /64, /56, /48 or IPv4 /32, /24, /16). */
  readonly groups: readonly string[];
  authenticated: boolean;
  /** Bytes received and not yet part of a finished message. */
  buffered: number;
  connection: Connection | null;
  /** Closed to make room for a peer from a less crowded address (its 'close' is still to come). */
  evicted: boolean;
  socket: Socket;
}

/** What a connection needs of the listener that accepted it: the shared byte budgets and its peer's standing. */
export interface ListenerSide {
  /** Bytes in unfinished messages across all connections. */
  buffered: number;
  /** Over the shared budget for unfinished messages: close the connections holding the most. */
  shed(): void;
  /** Over the shared budget for queued replies: end the connections with the longest queues. */
  shedSendQueues(): void;
  /** The connection authenticated: it stops counting as unauthenticated. */
  authenticated(peer: Peer): void;
}

/** A verified caller: its key and what that key may do here. */
export interface Caller {
  key: string;
  role: Role;
  auth: RequestAuth;
}

/** What a connection needs from the agent: the hello proof, request verification, the calls. */
export interface ConnectionHost {
  hello(req: Extract<Request, { type: 'hello' }>, binding: { kind: 'tls-exporter' | 'none'; value: string }): Reply;
  /** Throws the error to send (UNAUTHENTICATED, UNKNOWN_KEY, FORBIDDEN, BAD_SIGNATURE, ...). */
  verify(req: Exclude<Request, { type: 'hello' }>): Caller;
  /** `payload`: the raw chunk of a put-blob that came as a binary frame (checked against its header). */
  dispatch(req: Exclude<Request, { type: 'hello' | 'batch' }>, caller: Caller, conn: Connection, payload?: Buffer): Promise<Reply | null>;
  /** The reply to a `batch` whose signature and caller passed (its calls are dispatched next). */
  batchTaken(req: Extract<Request, { type: 'batch' }>): Reply;
  count(type: string, result: string): void;
}

/** Bytes a client frame of `n` payload bytes takes on the wire: header, length, mask. */
function frameBytes(n: number): number {
  return 6 + (n < 126 ? 0 : n < 65536 ? 2 : 8);
}

/**
 * One WebSocket connection. It counts the bytes received that are not yet part of a finished
 * message (a listener runs before ws reads a chunk, another after ws emitted what it finished), so
 * an unauthenticated peer can hold at most `preAuthMessageBytes`, an authenticated one one message,
 * and all of them together `bufferedBytes`; past that the connection is closed with the reason.
 */
export class Connection {
  private readonly streams: (() => void)[] = [];
  private messages = 0;
  private inFlight = 0;
  private lastMessage = Date.now();
  private awaitingPong = false;
  private closing = false;
  /** The socket is corked until the next tick (`send`). */
  private corked = false;

  constructor(
    readonly ws: WebSocket,
    private readonly socket: Socket,
    private readonly peer: Peer,
    private readonly listener: ListenerSide,
    private readonly limits: NetworkLimits,
    private readonly host: ConnectionHost,
  ) {
    socket.prependListener('data', (chunk: Buffer) => this.received(chunk.length));
    socket.on('data', () => this.check());
    // ws closes the connection itself on a protocol error (1002), a frame past maxPayload (1009) or
    // invalid UTF-8 (1007); the error event only reports it, and 'close' cleans up.
    ws.on('error', () => undefined);
    ws.on('close', () => {
      this.streams.forEach((stop) => stop());
      this.streams.length = 0;
    });
    ws.on('ping', (data) => this.consumed(data.length));
    ws.on('pong', (data) => {
      this.awaitingPong = false;
      this.consumed(data.length);
    });
    ws.on('message', (data, isBinary) => {
      const buf = data as Buffer;
      this.consumed(buf.length);
      this.onMessage(buf, isBinary);
    });
  }

  /**
   * Stop something this connection follows (a log, events) when it closes; returns the function
   * that forgets it sooner (a tail that ended). At most MAX_FOLLOWED at once: each is a closure the
   * agent keeps and a copy of every line or event it sends.
   */
  follow(stop: () => void): () => void {
    if (this.ws.readyState === this.ws.CLOSED || this.ws.readyState === this.ws.CLOSING) {
      stop();
      return () => undefined;
    }
    if (this.streams.length >= MAX_FOLLOWED) {
      throw new TooManyFollowedError(MAX_FOLLOWED);
    }
    this.streams.push(stop);
    return () => {
      const i = this.streams.indexOf(stop);
      if (i >= 0) this.streams.splice(i, 1);
    };
  }

  send(reply: Reply): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    const queued = this.ws.bufferedAmount;
    if (queued > this.limits.sendBufferBytes) {
      this.refuse(1008, 'the client does not read its replies');
      return;
    }
    // A backed-up peer: check the total queued for all peers (a sum over them, so only then).
    if (queued > SEND_QUEUE_CHECK_BYTES) {
      this.listener.shedSendQueues();
      if (this.closing) return;
    }
    // The replies sent together (a group's, resolved in one pass) leave as one write, not a
    // write or two each: the socket is corked until this turn's promise callbacks have run.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.ws.send(JSON.stringify(reply));
  }

  /** Closed or being closed (what it holds is about to be released). */
  get isClosing(): boolean {
    return this.closing;
  }

  /** Close with a code and reason; stop reading at once, so nothing more is buffered meanwhile. */
  refuse(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.pause();
    this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  /** End the connection now, dropping what is queued for it (a peer that does not read). */
  drop(): void {
    this.closing = true;
    this.ws.terminate();
  }

  /** Heartbeat: drop a peer that missed the last ping, close one idle for too long, ping. */
  beat(limits: NetworkLimits): void {
    // ping() throws unless the connection is open (closing ones are ended by refuse's timer).
    if (this.closing || this.ws.readyState !== this.ws.OPEN) return;
    if (this.awaitingPong) {
      this.ws.terminate();
      return;
    }
    if (this.peer.authenticated && this.streams.length === 0 && this.inFlight === 0 && Date.now() - this.lastMessage > limits.idleMs) {
      this.refuse(1000, `idle for ${Math.round(limits.idleMs / 1000)} s`);
      return;
    }
    this.awaitingPong = true;
    this.ws.ping();
  }

  private received(n: number): void {
    this.peer.buffered += n;
    this.listener.buffered += n;
  }

  private consumed(payload: number): void {
    const n = Math.min(this.peer.buffered, payload + frameBytes(payload));
    this.peer.buffered -= n;
    this.listener.buffered -= n;
  }

  private check(): void {
    if (this.closing) return;
    const limit = (this.peer.authenticated ? this.limits.messageBytes : this.limits.preAuthMessageBytes) + frameBytes(2 ** 20);
    if (this.peer.buffered > limit) {
      this.refuse(1009, this.peer.authenticated ? `a message may be at most ${this.limits.messageBytes} bytes` : `before authenticating, a message may be at most ${this.limits.preAuthMessageBytes} bytes`);
    } else if (this.listener.buffered > this.limits.bufferedBytes) {
      this.listener.shed();
    }
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closing) return;
    this.lastMessage = Date.now();
    if (!this.peer.authenticated && ++this.messages > this.limits.preAuthMessages) {
      this.refuse(1008, 'authenticate first (too many messages before authentication)');
      return;
    }
    // JSON text is parsed whole, so it stays small; only a put-blob chunk comes larger, as a binary
    // frame whose JSON header is capped and whose bytes are only hashed (readBlobFrame).
    if (!isBinary && data.length > SOFT_FRAME_LIMIT) {
      const code = ErrorCode.FRAME_TOO_LARGE;
      this.host.count('unknown', code);
      this.send({ type: 'error', id: null, error: { code, message: `a message may be at most ${SOFT_FRAME_LIMIT} bytes (got ${data.length}); upload blobs in chunks` } });
      return;
    }
    let req: Request;
    let id: string | null = null;
    let payload: Buffer | undefined;
    try {
      let value: unknown;
      if (isBinary) ({ header: value, payload } = readBlobFrame(data));
      else value = JSON.parse(data.toString('utf8'));
      if (value !== null && typeof value === 'object' && typeof (value as { id?: unknown }).id === 'string') id = ((value as { id: string }).id).slice(0, 128);
      req = payload !== undefined ? parseBlobFrame(value, payload) : parseRequest(value);
      if (payload === undefined && req.type === 'put-blob' && (req.chunk !== undefined || req.data === undefined)) {
        throw new LowcloudError(ErrorCode.BAD_MESSAGE, 'put-blob in a text frame carries its bytes as base64 `data`; one with `chunk` must be a binary frame (its bytes after the header)');
      }
    } catch (err) {
      const e = err instanceof SyntaxError ? { code: ErrorCode.BAD_MESSAGE, message: `malformed JSON: ${err.message}` } : toWireError(err);
      this.host.count('unknown', e.code);
      this.send({ type: 'error', id, error: e });
      return;
    }
    if (req.type === 'hello') {
      this.host.count('hello', 'ok');
      this.send(this.host.hello(req, channelBinding(this.socket)));
      return;
    }
    let caller: Caller;
    try {
      if (req.type === 'batch') checkBatchIds(req);
      caller = this.host.verify(req);
    } catch (err) {
      const e = toWireError(err);
      this.host.count(req.type, e.code);
      this.send({ type: 'error', id: req.id, error: e });
      return;
    }
    this.listener.authenticated(this.peer);
    if (req.type !== 'batch') {
      this.run(req, caller, payload);
      return;
    }
    // Each call as if it had come alone, in order, the k-th made against the batch's generation + k.
    this.host.count('batch', 'ok');
    this.send(this.host.batchTaken(req));
    req.calls.forEach((call, k) => this.run(call, { ...caller, auth: { ...caller.auth, generation: caller.auth.generation + k } }));
  }

  private run(req: Exclude<Request, { type: 'hello' | 'batch' }>, caller: Caller, payload?: Buffer): void {
    this.inFlight++;
    void this.host.dispatch(req, caller, this, payload).then(
      (reply) => {
        this.inFlight--;
        this.host.count(req.type, 'ok');
        if (reply !== null) this.send(reply);
      },
      (err: unknown) => {
        this.inFlight--;
        const e = toWireError(err);
        this.host.count(req.type, e.code);
        this.send({ type: 'error', id: req.id, error: e });
      },
    );
  }
}

/** A batch's ids, its own and its calls', each once: every reply names the one call it answers. */
function checkBatchIds(req: Extract<Request, { type: 'batch' }>): void {
  const ids = new Set([req.id]);
  req.calls.forEach((c, k) => {
    if (ids.has(c.id)) throw new LowcloudError(ErrorCode.BAD_MESSAGE, `invalid request at /calls/${k}/id: "${c.id.slice(0, 40)}" is the id of the batch or of a call before it; each needs its own`, { details: { path: `calls.${k}.id` } });
    ids.add(c.id);
  });
}
