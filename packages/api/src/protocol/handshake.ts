import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { canonicalJson } from '../digest.js';
import type { ChannelBinding } from './messages.js';

/**
 * The agent's `hello` proof, the part both sides compute: the agent to sign it, the client to check
 * it. Here, not in the client, so that the agent's server does not load the client.
 */

/** RFC 9266 `tls-exporter`: 32 bytes of keying material of this TLS session, under this label. */
const TLS_EXPORTER_LABEL = 'EXPORTER-Channel-Binding';

/**
 * What binds the agent's hello proof to one connection, as each side computes it from its own
 * socket. TLS: the session's exported keying material, which differs on each side of a relay that
 * terminates TLS, whatever certificate and key the relay holds. Plain ws:// (loopback only) has
 * nothing to bind to: `none` (a byte relay on loopback is a local process, which could as well read
 * the agent's state directory; port forwards such as `ssh -L` keep working).
 */
export function channelBinding(socket: Socket): { kind: ChannelBinding; value: string } {
  if (socket instanceof TLSSocket) return { kind: 'tls-exporter', value: `tls-exporter:${socket.exportKeyingMaterial(32, TLS_EXPORTER_LABEL, Buffer.alloc(0)).toString('hex')}` };
  return { kind: 'none', value: 'none' };
}

/** What the agent's handshake proof covers: the client's challenge and the channel binding. */
export function helloProofData(challenge: string, binding: string): string {
  return canonicalJson({ purpose: 'lowcloud-agent-hello', challenge, binding });
}
