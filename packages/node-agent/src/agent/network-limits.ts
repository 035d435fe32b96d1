/**
 * Every bound on what the network may make the agent hold. Nothing a peer sends is kept beyond
 * these; what would pass one is refused (the connection closed with a code saying which).
 */
export interface NetworkLimits {
  /** Largest message before the connection has authenticated (hello and authenticate are < 1 KiB). */
  preAuthMessageBytes: number;
  /** Largest message after; ws closes the connection (1009) at a frame header announcing more. */
  messageBytes: number;
  /** Bytes held in unfinished messages, summed over every connection. */
  bufferedBytes: number;
  /** Bytes queued to send to one peer that does not read them. */
  sendBufferBytes: number;
  /** Bytes queued to send, summed over every connection (followers of a busy log that never read). */
  sendBufferTotalBytes: number;
  connections: number;
  /** Per client address (IPv6: per /64, which one host usually holds whole). */
  connectionsPerAddress: number;
  /** Per client address; a /56 or IPv4 /24 holds at most 2x, a /48 or IPv4 /16 4x (ADDRESS_LEVELS). */
  unauthenticatedPerAddress: number;
  unauthenticated: number;
  /** Messages an unauthenticated connection may send (hello, authenticate, a few errors). */
  preAuthMessages: number;
  /** From TCP accept to an authenticated connection: TLS, the HTTP upgrade, hello, authenticate. */
  handshakeMs: number;
  /** An authenticated connection with no message and nothing followed is closed after this. */
  idleMs: number;
  /** The agent pings every connection this often; one that missed the last pong is dropped. */
  heartbeatMs: number;
  /**
   * New connections per second per client address (IPv6: /64), with a burst of twice as many;
   * past it a connection is closed at accept, before its TLS handshake (~0.6-2.3 ms of CPU each)
   * runs. A /56 or IPv4 /24 gets 4x, a /48 or IPv4 /16 8x (ADDRESS_LEVELS).
   */
  connectsPerSecondPerAddress: number;
  /** New connections per second for the whole agent (burst twice that), shared fairly between /48s (IPv4 /16s). */
  connectsPerSecond: number;
}

export const DEFAULT_LIMITS: NetworkLimits = {
  preAuthMessageBytes: 8 * 1024,
  messageBytes: 16 * 2 ** 20,
  bufferedBytes: 64 * 2 ** 20,
  sendBufferBytes: 64 * 2 ** 20,
  sendBufferTotalBytes: 128 * 2 ** 20,
  connections: 1024,
  connectionsPerAddress: 64,
  unauthenticatedPerAddress: 16,
  unauthenticated: 256,
  preAuthMessages: 8,
  handshakeMs: 10_000,
  idleMs: 10 * 60_000,
  heartbeatMs: 30_000,
  connectsPerSecondPerAddress: 20,
  connectsPerSecond: 100,
};
