import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ipaddr from 'ipaddr.js';
import { WebSocketServer } from 'ws';
import { Connection, type ConnectionHost, type ListenerSide, type Peer } from './connection.js';
import type { NetworkLimits } from './network-limits.js';
import type { NetworkUsage } from './metrics.js';

/** Addresses whose connection rate is remembered at once (the oldest are forgotten past it). */
const RATE_ENTRIES = 4096;

export interface ListenerOptions {
  host: string;
  port: number;
  tls: { cert: Buffer; key: Buffer } | null;
  limits: NetworkLimits;
  /** Origins whose browser pages may connect; any other request with an Origin header gets 403. */
  allowedOrigins: readonly string[];
  connectionHost: ConnectionHost;
  log(line: string): void;
  /** A connection closed at accept: `rate` (too many new ones from its address), `address` (its address holds its share), `full` (every unauthenticated slot taken). */
  refused?(reason: RefusalReason): void;
}

export type RefusalReason = 'rate' | 'address' | 'full';

/** The address group a limit counts against: the IPv4 address, or the IPv6 /64. */
export function addressGroup(address: string | undefined): string {
  if (address === undefined || !ipaddr.isValid(address)) return 'unknown';
  const a = ipaddr.process(address);
  if (a.kind() === 'ipv4') return a.toString();
  return `${(a as ipaddr.IPv6).toNormalizedString().split(':').slice(0, 4).join(':')}::/64`;
}

/**
 * The agent's public listener: a TCP (TLS) server whose upgrades to WebSocket it handles itself,
 * so that it can count and refuse connections per address before any byte reaches ws, refuse
 * browser origins, and give each connection its own message limit (small until it authenticates).
 */
export class AgentListener implements ListenerSide {
  private readonly server: http.Server | https.Server;
  private readonly wss: WebSocketServer;
  private readonly peers = new Map<string, Peer>();
  private readonly groups = new Map<string, Group>();
  /** Per address group: a token bucket of new connections (insertion order = least recently seen first). */
  private readonly rates = new Map<string, { tokens: number; at: number }>();
  private unauthenticated = 0;
  /** Unauthenticated peers evicted whose 'close' has not run yet (their counts still include them). */
  private evicting = 0;
  /** Bytes in unfinished messages across all connections. */
  buffered = 0;
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ListenerOptions) {
    const limits = opts.limits;
    const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(404, { 'content-type': 'text/plain', connection: 'close' });
      res.end('lowcloud agent: connect with a WebSocket client (lowcloud apply / status)\n');
    };
    this.server = opts.tls === null
      ? http.createServer(onRequest)
      : https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.3', handshakeTimeout: limits.handshakeMs }, onRequest);
    this.server.headersTimeout = limits.handshakeMs;
    this.server.requestTimeout = limits.handshakeMs;
    this.server.maxHeadersCount = 64;
    this.server.maxConnections = limits.connections;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: limits.messageBytes, perMessageDeflate: false, clientTracking: false });
    this.server.on('connection', (socket: Socket) => this.accept(socket));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
    // A malformed request or TLS hello: the socket is closed; the agent has nothing to do with it.
    this.server.on('clientError', (_err, socket: Duplex) => socket.destroy());
    this.server.on('tlsClientError', (_err, socket: Duplex) => socket.destroy());
    this.wss.on('error', (err) => opts.log(`websocket server error: ${err.message}`));
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? this.opts.port;
  }

  listen(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        // After listening, an accept error (EMFILE, ...) is reported; it must not end the agent.
        this.server.on('error', (err) => this.opts.log(`listener error: ${err.message}`));
        resolve();
      });
    });
  }

  startHeartbeat(): void {
    this.heartbeat = setInterval(() => {
      for (const p of this.peers.values()) p.connection?.beat(this.opts.limits);
    }, this.opts.limits.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Close every connection (1001) and stop listening; after a second, drop what is left. */
  async close(): Promise<void> {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    const closed = new Promise((r) => this.server.close(r));
    for (const p of this.peers.values()) p.connection?.ws.close(1001, 'agent shutting down');
    setTimeout(() => this.peers.forEach((p) => p.connection?.ws.terminate()), 1000).unref();
    this.server.closeIdleConnections?.();
    await closed;
  }

  /** A connection stops counting as unauthenticated (its message limit rises). */
  authenticated(peer: Peer): void {
    if (peer.authenticated) return;
    peer.authenticated = true;
    this.unauthenticated--;
    const g = this.groups.get(peer.group);
    if (g !== undefined) g.unauthenticated--;
  }

  /**
   * Over the shared budget for unfinished messages: close the connections holding the most until
   * the others fit. Not the one whose bytes happened to arrive last: that would let one peer that
   * holds the budget refuse every other client's multi-chunk message (a read key shutting out uploads).
   */
  shed(): void {
    const open = [...this.peers.values()].filter((p) => p.connection !== null && !p.connection.isClosing).sort((a, b) => b.buffered - a.buffered);
    let held = open.reduce((sum, p) => sum + p.buffered, 0);
    for (const p of open) {
      if (held <= this.opts.limits.bufferedBytes) break;
      held -= p.buffered;
      p.connection?.refuse(1013, 'the agent holds too many unfinished messages; this connection held the most; retry later');
    }
  }

  /** For /metrics: connections, bytes held in unfinished messages, bytes queued to send. */
  usage(): NetworkUsage {
    let sendQueuedBytes = 0;
    for (const p of this.peers.values()) sendQueuedBytes += p.connection?.ws.bufferedAmount ?? 0;
    return { connections: this.peers.size, unfinishedBytes: this.buffered, sendQueuedBytes };
  }

  /**
   * Bytes queued to send over all connections past their total budget: end the connections with
   * the longest queues (peers that do not read) until the others fit.
   */
  shedSendQueues(): void {
    const open = [...this.peers.values()].filter((p) => p.connection !== null && !p.connection.isClosing).sort((a, b) => (b.connection?.ws.bufferedAmount ?? 0) - (a.connection?.ws.bufferedAmount ?? 0));
    let queued = open.reduce((sum, p) => sum + (p.connection?.ws.bufferedAmount ?? 0), 0);
    for (const p of open) {
      if (queued <= this.opts.limits.sendBufferTotalBytes) break;
      queued -= p.connection?.ws.bufferedAmount ?? 0;
      // Ended at once: a close frame would queue behind what the peer does not read anyway.
      p.connection?.drop();
    }
  }

  private accept(socket: Socket): void {
    // Socket errors (resets, timeouts) end the socket; 'close' below cleans up after it.
    socket.on('error', () => undefined);
    const group = addressGroup(socket.remoteAddress);
    const key = peerKey(socket);
    const limits = this.opts.limits;
    const g = this.groups.get(group) ?? { all: 0, unauthenticated: 0, evicting: 0 };
    const refuse = (reason: RefusalReason) => {
      socket.destroy();
      this.opts.refused?.(reason);
    };
    if (key === null) return void socket.destroy(); // gone before it could be looked at
    if (!this.admitRate(group)) return refuse('rate');
    if (g.all >= limits.connectionsPerAddress || g.unauthenticated >= limits.unauthenticatedPerAddress) return refuse('address');
    if (this.unauthenticated - this.evicting >= limits.unauthenticated && !this.evictFor(g)) return refuse('full');
    g.all++;
    g.unauthenticated++;
    this.groups.set(group, g);
    this.unauthenticated++;
    const peer: Peer = { group, authenticated: false, buffered: 0, connection: null, evicted: false, socket };
    this.peers.set(key, peer);
    const deadline = setTimeout(() => {
      if (!peer.authenticated) {
        if (peer.connection !== null) peer.connection.refuse(1008, 'not authenticated in time');
        else socket.destroy();
      }
    }, limits.handshakeMs);
    deadline.unref();
    socket.once('close', () => {
      clearTimeout(deadline);
      this.peers.delete(key);
      this.buffered -= peer.buffered;
      peer.buffered = 0;
      g.all--;
      if (peer.evicted) {
        g.evicting--;
        this.evicting--;
      }
      if (!peer.authenticated) {
        g.unauthenticated--;
        this.unauthenticated--;
      }
      if (g.all === 0) this.groups.delete(group);
    });
  }

  /** Take a token from the address's bucket (refilled at the per-second rate, holding twice that). */
  private admitRate(group: string): boolean {
    const rate = this.opts.limits.connectsPerSecondPerAddress;
    const now = Date.now();
    const b = this.rates.get(group) ?? { tokens: 2 * rate, at: now };
    b.tokens = Math.min(2 * rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    this.rates.delete(group); // re-inserted last: the map's first entry is the least recently seen
    this.rates.set(group, b);
    if (this.rates.size > RATE_ENTRIES) this.rates.delete(this.rates.keys().next().value as string);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /**
   * Every unauthenticated slot is taken: make room for a peer whose address holds fewer of them
   * than the most crowded address, by closing that address's oldest unauthenticated connection.
   * So half-open connections from a few addresses (slowloris) cannot lock out an operator
   * connecting from another one; only as many attacking addresses as slots could.
   */
  private evictFor(g: Group): boolean {
    let victim: Group | null = null;
    let victimKey = '';
    for (const [k, other] of this.groups) {
      if (victim === null || other.unauthenticated - other.evicting > victim.unauthenticated - victim.evicting) {
        victim = other;
        victimKey = k;
      }
    }
    if (victim === null || victim === g || victim.unauthenticated - victim.evicting <= g.unauthenticated + 1) return false;
    for (const p of this.peers.values()) {
      if (p.group !== victimKey || p.authenticated || p.evicted) continue;
      p.evicted = true;
      victim.evicting++;
      this.evicting++;
      p.socket.destroy();
      return true;
    }
    return false;
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined); // as in accept: the close handler cleans up
    const key = peerKey(socket as Socket);
    const peer = key === null ? undefined : this.peers.get(key);
    if (peer === undefined || peer.connection !== null) {
      socket.destroy();
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !this.opts.allowedOrigins.includes(origin)) {
      const body = `lowcloud agent: WebSocket connections from web pages are refused (Origin ${origin.slice(0, 200)}); allow an origin with --allow-origin\n`;
      socket.end(`HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      peer.connection = new Connection(ws, socket as Socket, peer, this, this.opts.limits, this.opts.connectionHost);
    });
  }
}

interface Group {
  all: number;
  unauthenticated: number;
  evicting: number;
}

function peerKey(socket: Socket): string | null {
  return socket.remoteAddress === undefined ? null : `${socket.remoteAddress}|${socket.remotePort ?? 0}`;
}
