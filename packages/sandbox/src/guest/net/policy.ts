import net from 'node:net';
import type { NetworkGrant } from '@lowcloud/api';

/**
 * A network grant compiled for fast checks. Connect targets are `host:port`, `ip:port`, `[v6]:port`
 * or `cidr:port`; a host named in the grant may be looked up by the guest, and may be connected
 * at any address the host resolved it to when the guest started.
 */
export interface NetPolicy {
  listen: Set<number>;
  connect: { family: 4 | 6; bytes: number[]; prefix: number; port: number }[];
  names: Set<string>;
  udp: boolean;
}

export type IpAddr = { family: 4 | 6; bytes: number[] };

export async function compilePolicy(grant: NetworkGrant, lookup: (host: string) => Promise<string[]>): Promise<NetPolicy> {
  const policy: NetPolicy = { listen: new Set(grant.listen), connect: [], names: new Set(), udp: grant.udp === true };
  for (const target of grant.connect) {
    const m = /^(?:\[([^\]]+)\]|([^:/]+))(?:\/(\d+))?:(\d+)$/.exec(target);
    if (m === null) throw new Error(`connect target "${target}" is not host:port, ip:port or cidr:port`);
    const host = (m[1] ?? m[2]) as string;
    const port = Number(m[4]);
    const ip = parseIp(host);
    if (ip !== null) {
      policy.connect.push({ ...ip, prefix: m[3] === undefined ? ip.bytes.length * 8 : Number(m[3]), port });
      continue;
    }
    policy.names.add(host);
    for (const addr of await lookup(host).catch(() => [])) {
      const a = parseIp(addr);
      if (a !== null) policy.connect.push({ ...a, prefix: a.bytes.length * 8, port });
    }
  }
  return policy;
}

export function allowsConnect(p: NetPolicy, addr: IpAddr, port: number): boolean {
  return p.connect.some((c) => c.port === port && c.family === addr.family && inPrefix(c.bytes, addr.bytes, c.prefix));
}

export function parseIp(s: string): IpAddr | null {
  if (net.isIPv4(s)) return { family: 4, bytes: s.split('.').map(Number) };
  if (net.isIPv6(s)) {
    const [head, tail] = s.split('::') as [string, string | undefined];
    const h = head === '' ? [] : head.split(':');
    const t = tail === undefined || tail === '' ? [] : tail.split(':');
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    return { family: 6, bytes: groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]) };
  }
  return null;
}

function inPrefix(net: number[], addr: number[], prefix: number): boolean {
  for (let bit = 0; bit < prefix; bit++) {
    const i = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if (((net[i] ?? 0) & mask) !== ((addr[i] ?? 0) & mask)) return false;
  }
  return true;
}
