// Not the package's barrel: that loads the whole api (the infra file's parser, signing, ws; ~110-150 ms
// alone here), and a component guest's worker thread loads this module at every start (a component's
// `lowcloud run`: 1.20 -> 1.15 s, median of 10 alternated).
import { formatConnectTarget, unresolvedProcessTarget, type NetworkAccess } from '@lowcloud/api/grants/network';
import { parseIp, type IpAddr } from '../../common/ip.js';

export { parseIp, type IpAddr } from '../../common/ip.js';

/**
 * A network grant compiled for fast checks. A host named in the grant may be looked up by the
 * guest, and may be connected at any address the host resolved it to when the guest started.
 * A process named in the grant (resolved by the planner to its machine's address) may be looked
 * up by its name, which gives that address, and connected there.
 */
export interface NetPolicy {
  listen: Set<number>;
  connect: { family: 4 | 6; bytes: number[]; prefix: number; port: number }[];
  names: Set<string>;
  /** Granted process names -> the address a lookup of the name gives (an IP address or a host name). */
  aliases: Map<string, string>;
  udp: boolean;
  /** Granted host names that did not resolve when the guest started: the guest cannot reach them. */
  unresolved: { target: string; reason: string }[];
}

export async function compilePolicy(grant: NetworkAccess, lookup: (host: string) => Promise<string[]>): Promise<NetPolicy> {
  const policy: NetPolicy = { listen: new Set(grant.listen), connect: [], names: new Set(), aliases: new Map(), udp: grant.udp, unresolved: [] };
  for (const target of grant.connect) {
    switch (target.kind) {
      case 'address':
      case 'cidr': {
        const ip = parseIp(target.ip) as IpAddr;
        policy.connect.push({ ...ip, prefix: target.kind === 'cidr' ? target.prefix : ip.bytes.length * 8, port: target.port });
        break;
      }
      case 'host':
      case 'process': {
        let host = target.name;
        if (target.kind === 'process') {
          if (target.address === undefined) throw unresolvedProcessTarget(target);
          policy.aliases.set(target.name, target.address);
          host = target.address;
        }
        policy.names.add(target.name);
        const ip = parseIp(host);
        if (ip !== null) {
          policy.connect.push({ ...ip, prefix: ip.bytes.length * 8, port: target.port });
          break;
        }
        let addrs: IpAddr[] = [];
        try {
          addrs = (await lookup(host)).map(parseIp).filter((a) => a !== null);
        } catch (err) {
          policy.unresolved.push({ target: formatConnectTarget(target), reason: (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err)) });
          break;
        }
        if (addrs.length === 0) policy.unresolved.push({ target: formatConnectTarget(target), reason: 'no address' });
        for (const a of addrs) policy.connect.push({ ...a, prefix: a.bytes.length * 8, port: target.port });
        break;
      }
    }
  }
  return policy;
}

export function allowsConnect(p: NetPolicy, addr: IpAddr, port: number): boolean {
  return p.connect.some((c) => c.port === port && c.family === addr.family && inPrefix(c.bytes, addr.bytes, c.prefix));
}

function inPrefix(net: number[], addr: number[], prefix: number): boolean {
  for (let bit = 0; bit < prefix; bit++) {
    const i = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if (((net[i] ?? 0) & mask) !== ((addr[i] ?? 0) & mask)) return false;
  }
  return true;
}
