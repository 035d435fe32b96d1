import { describe, expect, it } from 'vitest';
import { parseConnectTarget, type NetworkGrant } from '@lowcloud/api';
import { allowList as allowListOf } from './firewall.js';

// In the order written (not sorted), so each rule is easy to read against its target.
const allowList = (g: NetworkGrant, nameservers: string[]) => allowListOf({ listen: g.listen, connect: g.connect.map((t) => parseConnectTarget(t)), udp: g.udp === true }, nameservers);

describe('allowList: the nftables rules of a network grant', () => {
  it('addresses, CIDRs and IPv6 by address and port; listen ports inbound; TCP only without udp', () => {
    const r = allowList({ listen: [7000, 7001], connect: ['127.0.0.1:5432', '10.0.0.0/8:6379', '[::1]:80'] }, ['10.0.0.2']);
    expect(r.out).toEqual(['ip daddr 127.0.0.1 tcp dport 5432 accept', 'ip daddr 10.0.0.0/8 tcp dport 6379 accept', 'ip6 daddr ::1 tcp dport 80 accept']);
    expect(r.in).toEqual(['tcp dport { 7000, 7001 } accept']);
    expect(r.summary).toBe('listen [7000, 7001], connect [127.0.0.1:5432, 10.0.0.0/8:6379, [::1]:80], no UDP');
  });

  it('a host granted by name: its port at any address, and DNS to the nameservers', () => {
    const r = allowList({ listen: [], connect: ['db.internal:5432'], udp: true }, ['127.0.0.53', 'fe80::1']);
    expect(r.out).toEqual([
      'tcp dport 5432 accept',
      'udp dport 5432 accept',
      'ip daddr 127.0.0.53 udp dport 53 accept',
      'ip daddr 127.0.0.53 tcp dport 53 accept',
      'ip6 daddr fe80::1 udp dport 53 accept',
      'ip6 daddr fe80::1 tcp dport 53 accept',
    ]);
    expect(r.in).toEqual([]);
    expect(r.summary).toContain('named hosts by port, DNS to 127.0.0.53, fe80::1');
  });

  it('no grant: no rule, so everything is refused', () => {
    expect(allowList({ listen: [], connect: [] }, ['1.1.1.1'])).toMatchObject({ out: [], in: [] });
  });

  it('a process target (resolved by the planner, never sent to an agent) is refused, not skipped', () => {
    expect(() => allowListOf({ listen: [], connect: [{ kind: 'process', name: 'kv-a', port: 7101 }], udp: false }, [])).toThrow('connect target process kv-a:7101 was not resolved to an address');
  });
});
