import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { ADDRESS_LEVELS, addressGroups, ConnectBudget } from './admission.js';
import { Connection, type ConnectionHost, type ListenerSide, type Peer } from './connection.js';
import type { NetworkLimits } from './network-limits.js';
import type { NetworkUsage } from './metrics.js';

export interface ListenerOptions {
  host: string;
  port: number;
  tls: { cert: Buffer; key: Buffer } | null;
  limits: NetworkLimits;
  /** Origins whose browser pages may connect; any other request with an Origin header gets 403. */
  allowedOrigins: readonly string[];
  connectionHost: ConnectionHost;
  log(line: string): void;
  /**
   * A connection closed at accept: `rate` (too many new ones from its address group), `busy` (the
   * agent's budget of new connections is spent, or its address group took more than its share of
   * it), `address` (its address group holds its share of connections), `full` (every
   * unauthenticated slot taken).
   */
  refused?(reason: RefusalReason): void;
}

export type RefusalReason = 'rate' | 'busy' | 'address' | 'full';

/**
 * The agent's public listener: a TCP (TLS) server whose upgrades to WebSocket it handles itself,
 * so that it can count and refuse connections per address before any byte reaches ws, refuse
 * browser origins, and give each connection its own message limit (small until it authenticates).
 */
export class AgentListener implements ListenerSide {
  private readonly server: http.Server | https.Server;
  private readonly wss: WebSocketServer;
  private readonly peers = new Map<string, Peer>();
  /** Connections per address group, one map per level of ADDRESS_LEVELS (a group is there while it has one). */
  private readonly groups: Map<string, Group>[] = ADDRESS_LEVELS.map(() => new Map());
  private readonly budget: ConnectBudget;
  private unauthenticated = 0;
  /** Unauthenticated peers evicted whose 'close' has not run yet (their counts still include them). */
  private evicting = 0;
  /** Bytes in unfinished messages across all connections. */
  buffered = 0;
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ListenerOptions) {
    const limits = opts.limits;
    this.budget = new ConnectBudget(limits.connectsPerSecondPerAddress, limits.connectsPerSecond);
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
    peer.groups.forEach((k, i) => {
      const g = this.groups[i]?.get(k);
      if (g !== undefined) g.unauthenticated--;
    });
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
    const keys = addressGroups(socket.remoteAddress);
    const key = peerKey(socket);
    const limits = this.opts.limits;
    const refuse = (reason: RefusalReason) => {
      socket.destroy();
      this.opts.refused?.(reason);
    };
    if (key === null) return void socket.destroy(); // gone before it could be looked at
    const refusal = this.budget.admit(keys);
    if (refusal !== null) return refuse(refusal);
    const gs = keys.map((k, i) => this.groups[i]?.get(k) ?? { all: 0, unauthenticated: 0, evicting: 0 });
    const top = gs.at(-1) as Group;
    // Unauthenticated slots are shared like the rate: per address, and per /56 and /48 (IPv4 /24, /16).
    if ((gs[0] as Group).all >= limits.connectionsPerAddress || gs.some((g, i) => g.unauthenticated >= limits.unauthenticatedPerAddress * (ADDRESS_LEVELS[i]?.unauthenticated ?? 1))) return refuse('address');
    if (this.unauthenticated - this.evicting >= limits.unauthenticated && !this.evictFor(top)) return refuse('full');
    gs.forEach((g, i) => {
      g.all++;
      g.unauthenticated++;
      this.groups[i]?.set(keys[i] as string, g);
    });
    this.unauthenticated++;
    const peer: Peer = { groups: keys, authenticated: false, buffered: 0, connection: null, evicted: false, socket };
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
      if (peer.evicted) {
        top.evicting--;
        this.evicting--;
      }
      if (!peer.authenticated) this.unauthenticated--;
      gs.forEach((g, i) => {
        g.all--;
        if (!peer.authenticated) g.unauthenticated--;
        if (g.all === 0) this.groups[i]?.delete(keys[i] as string);
      });
    });
  }

  /** Entries in the connection-rate table (for the bench: it stays bounded however many prefixes connect). */
  get rateEntries(): number {
    return this.budget.entries;
  }

  /**
   * Every unauthenticated slot is taken: make room for a peer whose top-level address group (/48,
   * IPv4 /16) holds fewer of them than the most crowded one, by closing that group's oldest
   * unauthenticated connection. So half-open connections from a few prefixes (slowloris) cannot
   * lock out an operator connecting from another one; only as many attacking /48s as slots could.
   */
  private evictFor(g: Group): boolean {
    const top = this.groups.length - 1;
    let victim: Group | null = null;
    let victimKey = '';
    for (const [k, other] of this.groups[top] ?? []) {
      if (victim === null || other.unauthenticated - other.evicting > victim.unauthenticated - victim.evicting) {
        victim = other;
        victimKey = k;
      }
    }
    if (victim === null || victim === g || victim.unauthenticated - victim.evicting <= g.unauthenticated + 1) return false;
    for (const p of this.peers.values()) {
      if (p.groups[top] !== victimKey || p.authenticated || p.evicted) continue;
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
