import { allowsConnect, type IpAddr, type NetPolicy } from './policy.js';

/**
 * The runtime layer of the network grant for UDP *sends*: a datagram may go only to a granted
 * connect target (`ip:port`, `cidr:port`, or an address a granted host resolved to). Binding is
 * checked elsewhere (granted listen ports); without this, a socket bound to its granted port could
 * send to any address (issue 9). Both ways a WASI 0.2 guest names a destination are checked: the
 * remote address of `stream(remote)` and each datagram's own `remote-address`.
 */
type Proto = Record<string, (...a: unknown[]) => unknown>;
export type WasiAddr = { tag: 'ipv4' | 'ipv6'; val: { port: number; address: number[] } };

export const wasiToIp = (a: WasiAddr): IpAddr =>
  a.tag === 'ipv4' ? { family: 4, bytes: a.val.address } : { family: 6, bytes: a.val.address.flatMap((g) => [g >> 8, g & 0xff]) };

const allowed = (p: NetPolicy, a: WasiAddr) => allowsConnect(p, wasiToIp(a), a.val.port);

export function guardUdpSends(udp: { UdpSocket: { prototype: Proto }; OutgoingDatagramStream: { prototype: Proto } }, policyOf: (network: object) => NetPolicy | undefined): void {
  const sockets = new WeakMap<object, NetPolicy>();
  const streams = new WeakMap<object, { policy: NetPolicy; connected: boolean }>();
  const sock = udp.UdpSocket.prototype;
  const bind = sock.startBind as (...a: unknown[]) => unknown;
  sock.startBind = function (this: object, ...args: unknown[]) {
    const r = bind.apply(this, args);
    const p = policyOf(args[0] as object);
    if (p !== undefined) sockets.set(this, p);
    return r;
  };
  const stream = sock.stream as (...a: unknown[]) => unknown;
  sock.stream = function (this: object, ...args: unknown[]) {
    const p = sockets.get(this);
    const remote = args[0] as WasiAddr | undefined;
    if (p === undefined || (remote !== undefined && !allowed(p, remote))) throw 'access-denied';
    const pair = stream.apply(this, args) as [object, object];
    streams.set(pair[1], { policy: p, connected: remote !== undefined });
    return pair;
  };
  const out = udp.OutgoingDatagramStream.prototype;
  const send = out.send as (...a: unknown[]) => unknown;
  out.send = function (this: object, ...args: unknown[]) {
    const s = streams.get(this);
    const datagrams = args[0] as { remoteAddress?: WasiAddr }[];
    if (s === undefined) throw 'access-denied';
    for (const d of datagrams) {
      // Unconnected: every datagram names its destination; connected: one it names must be the granted remote too.
      if (d.remoteAddress === undefined ? !s.connected : !allowed(s.policy, d.remoteAddress)) throw 'access-denied';
    }
    return send.apply(this, args);
  };
}
