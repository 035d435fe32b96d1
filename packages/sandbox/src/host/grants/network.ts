import { formatConnectTarget, type Enforcement } from '@lowcloud/api';
import { allowList, GuestFirewall, sweepStaleFirewallsOnce, systemNameservers, type FirewallRecord } from '../firewall.js';
import { probeWall } from '../isolation.js';
import { networkNamespace } from './isolation.js';
import type { GrantLayers, GrantModule } from './grant.js';

interface NetworkRecord {
  firewall: FirewallRecord | null;
}

/**
 * The network grant: its runtime layer is the guest host's wasi:sockets allow-list
 * (guest/net/policy.ts); its kernel layer an nftables table on the guest host's cgroup v2, or,
 * for a guest host in a network namespace of its own over a veth pair, the same allow-list loaded
 * inside that namespace by the wall (host/netns.ts): no packet of such a guest host passes the
 * host's hooks as its socket's, so a cgroup table would filter nothing of it. Without a grant, in
 * the wall, the empty namespace the wall gives it is the kernel layer (no table either).
 */
export const network: GrantModule<NetworkRecord> = {
  name: 'network',
  async setUp({ network: n, kind, kernel, caps, name, wall, netns }) {
    const report: Enforcement[] = [
      kind === 'module'
        ? { mechanism: 'WASI preview1 has no socket imports: no network access', level: 'runtime' }
        : {
            mechanism: `wasi:sockets allow-list: listen [${n.listen.join(', ')}], connect [${n.connect.map(formatConnectTarget).join(', ')}], UDP ${n.udp ? 'on granted ports, to granted targets' : 'denied'}, name lookup only for granted hosts`,
            level: 'runtime',
          },
    ];
    const ns = networkNamespace({ kind, network: n, wall, netns });
    // No grant, and the wall stands: the guest host's network namespace is an empty one of its own
    // (loopback alone), which is the kernel layer. A table on its cgroup in the host's namespace
    // would see none of its packets; it cost an `nft` run at each start (~45 ms here) and one at
    // each end (~30 ms), and a cgroup v2 directory.
    if (kernel && ns === 'empty' && wall && probeWall().wall !== null) return layers(null, [{ mechanism: "an empty network namespace of its own (the wall's): loopback alone, no route to any other address", level: 'kernel' }, ...report]);
    if (!kernel || !caps.nftables) return layers(null, report);
    if (ns === 'veth') {
      return layers(null, [{ mechanism: `nftables allow-list inside the guest host's own network namespace, loaded before it runs (${allowList(n, systemNameservers()).summary})`, level: 'kernel' }, ...report]);
    }
    // Once per process: remove what guests of killed owners left behind.
    sweepStaleFirewallsOnce();
    try {
      const fw = await GuestFirewall.create(name, n, kind === 'component', systemNameservers());
      return layers(fw, [{ mechanism: fw.mechanism, level: 'kernel' }, ...report], { nft: fw.nft, table: fw.record.table });
    } catch (err) {
      return layers(null, [...report, { mechanism: `kernel layer not used: ${err instanceof Error ? err.message : String(err)}`, level: 'advisory' }]);
    }
  },
  reattach: (record) => layers(record?.firewall ?? null, []),
};

function layers(fw: GuestFirewall | FirewallRecord | null, report: Enforcement[], table?: { nft: string; table: string }): GrantLayers {
  const record = fw === null ? null : fw instanceof GuestFirewall ? fw.record : fw;
  return {
    report,
    record: { firewall: record },
    ...(record === null ? {} : { cgroupDirs: [record.dir] }),
    ...(table === undefined ? {} : { table }),
    async release(launcherCleaned) {
      if (record !== null) await GuestFirewall.release(record, launcherCleaned);
    },
  };
}
