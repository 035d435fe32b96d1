import { GrantUnavailableError } from '../../errors.js';
import { formatConnectTarget, type NetworkAccess } from '@lowcloud/api';
import { DEFAULT_LIMITS, GUEST_TASKS, isolationReport, probeWall, type Wall, type WallFacts, type WallLimits } from '../isolation.js';
import { allowList, nftBinary, systemNameservers } from '../firewall.js';
import { interfacesNotForwarding, namespacePorts, pastaBinary, type NetnsMode, type OwnNetwork } from '../netns.js';
import { tool } from '../isolation.js';
import { gpuDeviceNodes } from './gpu.js';
import type { GrantModule, SetUpContext } from './grant.js';

/**
 * RLIMIT_FSIZE of the guest host: its disk grant (its data, also held by the disk grant's layers),
 * else 4 GiB. Its log files and exit record are no files it writes: its output goes down pipes to
 * the host, which writes and rotates the logs (host/output-pump.ts), and its exit record down a
 * pipe to its launcher (host/launcher.ts), so nothing of the host's disk but its data directory is
 * writable in its wall.
 */
function fileLimit(disk: number | undefined): number {
  return disk ?? DEFAULT_LIMITS.fileBytes;
}

/**
 * The network namespace of a walled guest host with a network grant: its own (netns.ts), reached
 * over a veth pair by default (`lowcloud agent --netns veth`), through pasta when asked
 * (`--netns pasta`, and for a grant that names an IPv6 target, which the pair does not route), or
 * the host's when asked (`--netns host`). The host's is kept, with an advisory line, also where its
 * own cannot be made: the user-namespace wall, a tool missing. The grant's two filtering layers hold either way; what the host's
 * namespace adds is that /proc/net there lists the host's sockets.
 */
type NamespaceChoice = { ns: 'empty' } | { ns: 'host'; hostWhy: string } | { ns: 'pasta'; pasta: string } | { ns: 'veth' };

/** Which namespace, from the grant's shape and the machine's tools alone (no file read, no rule built). */
function chooseNamespace(granted: boolean, wall: Wall | null, grant: NetworkAccess, asked: NetnsMode): NamespaceChoice {
  const host = (hostWhy: string) => ({ ns: 'host', hostWhy }) as const;
  if (!granted) return { ns: 'empty' };
  if (asked === 'host') return host('the agent was asked to keep it (lowcloud agent --netns host)');
  if (wall?.mode !== 'root') return host('a namespace of its own is made by the root wall only in this version (not in a user namespace)');
  const viaPasta = (why: string): NamespaceChoice => {
    const pasta = pastaBinary();
    return pasta === null ? host(`${why}pasta is not installed (Debian/Ubuntu package passt)`) : { ns: 'pasta', pasta };
  };
  if (asked === 'pasta') return viaPasta('');
  if (nftBinary() === null || tool('ip') === null || tool('nsenter') === null) return host('its veth pair needs ip (iproute2), nsenter (util-linux) and nft (nftables), and one is not installed');
  // IPv4 only over the pair: a grant that names an IPv6 target gets its own namespace through pasta.
  const v6 = grant.connect.find((t) => ((t.kind === 'address' || t.kind === 'cidr') && t.family === 6) || (t.kind === 'process' && t.address?.includes(':') === true));
  if (v6 !== undefined) return viaPasta(`its grant names an IPv6 target (${formatConnectTarget(v6)}), which the veth pair does not route in this version, and `);
  return { ns: 'veth' };
}

/** The chosen namespace as the report states it and the wall makes it. */
function wallNetwork(choice: NamespaceChoice, grant: NetworkAccess): { facts: WallFacts['network']; own: OwnNetwork | null } {
  if (choice.ns === 'empty' || choice.ns === 'host') return { facts: choice, own: null };
  const ports = namespacePorts(grant);
  if (choice.ns === 'pasta') return { facts: { ns: 'pasta', ports }, own: { kind: 'pasta', pasta: choice.pasta, ports } };
  const nameservers = systemNameservers();
  return {
    facts: { ns: 'veth', ports, ...(ports.listen.length === 0 ? {} : { closedTo: interfacesNotForwarding() }) },
    own: { kind: 'veth', ports, loopbackNameservers: nameservers.filter((ns) => ns.startsWith('127.')), rules: allowList(grant, nameservers) },
  };
}

/**
 * The network namespace a guest host of `ctx` will have, as the isolation module decides it: the
 * network grant's module asks, as a veth namespace's own allow-list is its kernel layer.
 */
export function networkNamespace(ctx: Pick<SetUpContext, 'kind' | 'network' | 'wall' | 'netns'>): NamespaceChoice['ns'] {
  const wall = ctx.wall ? probeWall().wall : null;
  return chooseNamespace(networkGranted(ctx.kind, ctx.network), wall, ctx.network, ctx.netns).ns;
}

/** A network only for a component granted some of it (preview1 has no sockets at all). */
function networkGranted(kind: SetUpContext['kind'], network: NetworkAccess): boolean {
  return kind === 'component' && (network.listen.length > 0 || network.connect.length > 0);
}

/**
 * The wall around the guest host (host/isolation.ts): not a grant of the guest's, but set up,
 * reported and released like one. It decides the uid the guest host runs as, its network
 * namespace and the limits on what it can multiply (tasks, file size, /tmp).
 */
export const isolation: GrantModule<null> = {
  name: 'isolation',
  // Every process and thread of the guest host counts, whatever grants it has.
  cgroupLimits: () => ({ tasks: GUEST_TASKS }),
  async setUp({ options, kind, network, cgroup, wall: allowed, requireWall, netns }) {
    const { wall, reason } = allowed ? probeWall() : { wall: null, reason: 'turned off for this guest' };
    // The guest's own opt-in (the infra file's allowUnwalled) lets this guest alone run unwalled.
    const optedIn = options.allowUnwalled === true;
    if (wall === null && allowed && requireWall && !optedIn) {
      throw new GrantUnavailableError(
        'isolation',
        `the kernel wall cannot be built here (${reason}); the guest was not started. Fix: install bubblewrap and util-linux (setpriv, prlimit, unshare)${process.getuid?.() === 0 ? '' : ' and allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1)'}, or run unwalled guests knowingly: this process alone (allowUnwalled: true on it in the infra file), or every guest of the agent (lowcloud agent --allow-unwalled, or lowcloud up --allow-unwalled for the local agents it starts)`,
      );
    }
    const mine = process.getuid?.() ?? 0;
    // The agent's per-process uid as root; otherwise the caller's.
    const uid = wall?.mode === 'root' && options.uid !== undefined ? options.uid : mine;
    // The GPU's device nodes exist in the guest host's view only with a gpu grant.
    const devices = options.grants.gpu === undefined ? [] : gpuDeviceNodes();
    const { facts, own } = wallNetwork(chooseNamespace(networkGranted(kind, network), wall, network, netns), network);
    const pidsCgroup = cgroup?.dirs.pids !== undefined;
    // RLIMIT_NPROC counts every task of a uid on the machine: only for a uid that is the guest's own.
    const ownUid = wall?.mode === 'root' && uid !== 0 && uid !== mine;
    const memory = options.grants.memory;
    const limits: WallLimits = {
      tasks: pidsCgroup || !ownUid ? null : GUEST_TASKS,
      fileBytes: fileLimit(options.grants.disk),
      tmpBytes: memory === undefined ? DEFAULT_LIMITS.tmpBytes : Math.min(memory, DEFAULT_LIMITS.tmpBytes),
    };
    // Where the caller requires the wall, an unwalled guest runs by its own opt-in: its report says so.
    const why = wall === null && allowed && requireWall ? `${reason}; it runs unwalled by its own opt-in, allowUnwalled in the infra file` : reason;
    const report = isolationReport(wall, why, uid, { network: facts, limits, pidsCgroup, userland: options.grants.gpu !== undefined });
    const net = own ?? facts.ns === 'host';
    return { report, record: null, wall: { wall, uid, devices, network: net, limits, userland: options.grants.gpu !== undefined } };
  },
  reattach: () => ({ report: [], record: null }),
};
