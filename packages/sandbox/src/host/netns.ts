import fs from 'node:fs';
import path from 'node:path';
import type { NetworkAccess } from '@lowcloud/api';
import { parseIp } from '../common/ip.js';

/**
 * The network namespace of a guest host with a network grant (issue 17). Its own, like the empty
 * one of a guest host without the grant, so that `/proc/net` inside shows only its own sockets and
 * no abstract socket of the host is reachable; the wall's shell connects it before any guest code
 * runs, in one of two ways (`lowcloud agent --netns veth|pasta|host`):
 *
 * **veth (default)**: a veth pair, `lcv<i>` on the host and `eth0` inside, with addresses from
 * 169.254.0.0/17 (a /30 per guest host; `i` is the first free interface name, so a name taken is
 * the lock and the kernel removes the pair with the namespace). No proxy: every packet is the
 * kernel's, so a connect to a port nobody listens on is refused as in the host's namespace.
 * - the granted listen ports: the host's table `lowcloud_veth_lcv<i>` redirects the host's own
 *   addresses at those ports (127.0.0.1 included) to the guest's address, and inside they are
 *   redirected to its 127.0.0.1 (a guest that binds 127.0.0.1 is reached as before);
 * - granted loopback targets (another guest at 127.0.0.1:7101, a nameserver at 127.0.0.53): policy
 *   routing inside sends 127.0.0.0/8 at those ports (and those only) out over the pair, where the
 *   host delivers them to its loopback (`route_localnet` on `lcv<i>` alone), or to the guest that
 *   listens on that port through its own table;
 * - other targets: routed by the host (forwarding on `lcv<i>` alone, which is the input interface
 *   whose setting the kernel checks) and masqueraded as the host's address;
 * - the network grant's nftables allow-list is loaded inside the namespace, where it sees every
 *   packet of the guest host before any address is rewritten: it is the grant's kernel layer
 *   (grants/network.ts makes no cgroup table, which would see none of them: they are another
 *   namespace's).
 * IPv4 only: a grant that names an IPv6 target goes through pasta instead (grants/isolation.ts).
 * Reaching a listen port from other machines needs forwarding on the interface they come in by
 * (the operator's choice: docs/security.md); the machine itself and its guests reach it always.
 *
 * **pasta**: Debian's `passt`, attached to the namespace; it forwards by proxying each connection:
 * - the granted listen ports are bound on the host by pasta and forwarded into the namespace
 *   (`-t`, `-u`): the agent, other guests and tests reach them at the host's 127.0.0.1 as before;
 * - the ports of granted loopback targets (another guest at 127.0.0.1:7101) are bound on the
 *   namespace's loopback and forwarded to the host's loopback (`-T`, `-U`); nothing else of the
 *   host's loopback is reachable (no `auto`, no gateway mapped to it: `--no-map-gw`);
 * - other targets go out through pasta's tap device, as connections pasta makes on the host.
 * pasta runs in the guest's cgroups: every socket it opens for the guest host is filtered by the
 * network grant's nftables table (firewall.ts) on the host, and its memory and tasks count against
 * the guest's. It accepts a connection before it knows its target is up and resets it after: a
 * client cannot tell a refused connect from a dead peer. It costs ~2.5x the veth pair per start
 * (docs/performance.md).
 *
 * Both are paid once per guest host, not per call.
 */
export interface NetworkPorts {
  /** Host ports forwarded into the namespace: the listen grant. */
  listen: number[];
  /** Ports of the host's loopback reachable at the namespace's loopback: granted loopback targets. */
  loopback: number[];
  udp: boolean;
}

/** A guest host's own namespace as the wall makes it: the pasta binary and its forwarding. */
export interface PastaNetwork {
  kind: 'pasta';
  pasta: string;
  ports: NetworkPorts;
}

/** A guest host's own namespace reached over a veth pair: its forwarding and the allow-list loaded inside. */
export interface VethNetwork {
  kind: 'veth';
  ports: NetworkPorts;
  /** Nameservers on the host's loopback (127.0.0.53) a guest granted a named host asks: routed out too. */
  loopbackNameservers: string[];
  /** The network grant's rules (firewall.ts allowList), for the namespace's own filter. */
  rules: { out: string[]; in: string[] };
}

export type OwnNetwork = PastaNetwork | VethNetwork;

/** How a network-granted guest host's namespace is made (`lowcloud agent --netns`): see above. */
export type NetnsMode = 'veth' | 'pasta' | 'host';

/** Where the pasta binary is, or null (package passt not installed). */
export function pastaBinary(): string | null {
  for (const dir of ['/usr/bin', '/usr/sbin', '/bin', '/sbin']) {
    const p = path.join(dir, 'pasta');
    if (fs.existsSync(p)) return p;
  }
  return null;
}

function loopbackAddress(ip: string): boolean {
  const p = parseIp(ip);
  return p !== null && (p.family === 4 ? ip.startsWith('127.') : p.bytes.every((b, i) => b === (i === 15 ? 1 : 0)));
}

/**
 * The forwarding for a grant. A named host (or a process target the planner left unresolved)
 * may resolve to the loopback: its port is forwarded too, as its nftables rule matches by port
 * alone. A listen port is never also forwarded out (pasta would hold the port the guest binds).
 */
export function namespacePorts(grant: NetworkAccess): NetworkPorts {
  const loopback = new Set<number>();
  for (const t of grant.connect) {
    switch (t.kind) {
      case 'address':
        if (loopbackAddress(t.ip)) loopback.add(t.port);
        break;
      case 'cidr':
        // A range that holds the loopback (127.0.0.0/8, 0.0.0.0/0, ::1/128, ::/0).
        if (t.family === 4 ? t.prefix === 0 || (t.ip.startsWith('127.') && t.prefix >= 8) : t.prefix === 0 || (loopbackAddress(t.ip) && t.prefix === 128)) loopback.add(t.port);
        break;
      case 'host':
        loopback.add(t.port);
        break;
      case 'process':
        if (t.address === undefined || parseIp(t.address) === null || loopbackAddress(t.address)) loopback.add(t.port);
        break;
    }
  }
  const listen = [...new Set(grant.listen)].sort((a, b) => a - b);
  return { listen, loopback: [...loopback].filter((p) => !listen.includes(p)).sort((a, b) => a - b), udp: grant.udp };
}

/**
 * pasta's options for `ports`, less the forwarding, which the wall's shell adds as it starts pasta
 * (it depends on which listen ports are free on the host then: PASTA_SHELL).
 */
export function pastaArgs(): string[] {
  return [
    '--quiet',
    // Root: pasta enters the namespace again for each spliced connection (setns needs CAP_SYS_ADMIN,
    // which it keeps; it drops the rest and runs under its own seccomp filter).
    '--runas',
    '0:0',
    '--config-net',
    // The gateway's address would otherwise be the host's loopback, every port of it.
    '--no-map-gw',
    '--no-icmp',
    '--no-dhcp',
    '--no-dhcpv6',
    '--no-ndp',
    '--no-ra',
    '--netns-only',
  ];
}

/** The wall's shell arguments for `ports`: listen ports, loopback ports (comma lists or `none`), UDP (1 or 0). */
export function portArgs(ports: NetworkPorts): string[] {
  const list = (ps: number[]) => (ps.length === 0 ? 'none' : ps.join(','));
  return [list(ports.listen), list(ports.loopback), ports.udp ? '1' : '0'];
}

/**
 * The machine's own interfaces (not the loopback, not a veth namespace's) with IPv4 forwarding
 * off: a listen port in a veth namespace is not reached from other machines by them.
 */
export function interfacesNotForwarding(): string[] {
  const dir = '/proc/sys/net/ipv4/conf';
  try {
    return fs
      .readdirSync(dir)
      .filter((i) => i !== 'all' && i !== 'default' && i !== 'lo' && !i.startsWith(VETH_PREFIX))
      .filter((i) => {
        try {
          return fs.readFileSync(path.join(dir, i, 'forwarding'), 'utf8').trim() === '0';
        } catch {
          return false; // gone meanwhile
        }
      })
      .sort();
  } catch {
    return [];
  }
}

/** The interfaces of veth namespaces on the host: `lcv<i>`, i < VETH_SLOTS (a /30 each of 169.254.0.0/17). */
export const VETH_PREFIX = 'lcv';
/** A host interface of a veth pair, as the wall shell names it (and reports it). */
export const VETH_INTERFACE = /^lcv\d{1,4}$/;
const VETH_SLOTS = 8192;
/** The host's table of a veth namespace (its listen ports, its masquerade), named after its interface. */
export const VETH_TABLE_PREFIX = 'lowcloud_veth_';

/** The addresses of the veth pairs: a /30 for each of the VETH_SLOTS interfaces. */
const VETH_RANGE = '169.254.0.0/17';

/**
 * The one table, shared by every veth namespace with listen ports, that refuses a connection
 * redirected to a guest whose pair is gone. Between a guest host's end (its namespace, and with it
 * its pair and the route to its address, go with it) and its shell's removal of its host table (or,
 * for a shell that was killed, the sweep's), the table still redirects its listen ports to its
 * address, which the machine then routes by its default route, where nobody answers: a client's
 * SYN went unanswered until its connect timed out (a minute or two), and a load balancer that
 * connects to its backends one at a time hung with it (examples/kv-cluster, a replica moved).
 * A redirected packet (`ct status dnat`) to that range that the machine forwards (from another
 * guest's namespace) by any interface but a pair is refused at once instead, as a port nobody
 * listens on is: a TCP reset, an ICMP port unreachable. One filter chain for all pairs (not one in
 * each pair's table): every packet the machine forwards passes it, so its cost must not grow with
 * the number of guests. The sweep removes it once no pair's table is left.
 * Not the machine's own connects in that moment: the output hook's `oifname` is the device of the
 * route before the redirect (`lo`), and the kernel drops a redirected 127.0.0.1 packet whose new
 * route leaves by an interface without `route_localnet` before any later hook sees it. For those, a
 * stop empties the table's redirects before it signals the guest host (the shell reports its
 * interface: GuestHost.stop), so only a guest host that ends on its own leaves that moment
 * (docs/security.md).
 */
export const VETH_REFUSE_TABLE = `${VETH_TABLE_PREFIX}refuse`;

const refuseGone = `ct status dnat ip daddr ${VETH_RANGE} oifname != "${VETH_PREFIX}*"`;
/** VETH_REFUSE_TABLE, made, then deleted, then made again in one transaction (so never twice). */
const REFUSE_NFT = [
  `table ip ${VETH_REFUSE_TABLE} {`,
  '}',
  `delete table ip ${VETH_REFUSE_TABLE}`,
  `table ip ${VETH_REFUSE_TABLE} {`,
  `  chain forward { type filter hook forward priority 0; ${refuseGone} meta l4proto tcp reject with tcp reset; ${refuseGone} reject; }`,
  '}',
];

/**
 * What the wall's shell runs for a veth namespace, with `@HIF@` (the host's interface), `@H@` (its
 * address) and `@G@` (the guest's) put in once the interface is made: the host's nftables table,
 * the namespace's `ip -batch` and the namespace's nftables rules.
 */
export function vethScripts(n: VethNetwork): { hostNft: string; nsIp: string; nsNft: string } {
  const { listen, loopback, udp } = n.ports;
  const l4 = udp ? 'tcp, udp' : 'tcp';
  const redirect = (to: string) => (listen.length === 0 ? '' : ` fib daddr type local meta l4proto { ${l4} } th dport { ${listen.join(', ')} } dnat to ${to};`);
  const table = `${VETH_TABLE_PREFIX}@HIF@`;
  const hostNft = [
    // Made, then deleted, then made again in one transaction: a table left by a wall shell that was
    // killed (same interface name, an earlier guest host) is replaced, not added to.
    `table ip ${table} {`,
    '}',
    `delete table ip ${table}`,
    `table ip ${table} {`,
    `  chain pre { type nat hook prerouting priority dstnat;${redirect('@G@')} }`,
    `  chain out { type nat hook output priority -100;${redirect('@G@')} }`,
    // The host's loopback answering into the pair needs an address the guest can answer; the guest
    // going out to the world, the host's.
    `  chain post { type nat hook postrouting priority srcnat; oifname "@HIF@" ip saddr 127.0.0.0/8 masquerade; ip saddr @G@ oifname != "${VETH_PREFIX}*" masquerade; }`,
    '}',
    ...(listen.length === 0 ? [] : REFUSE_NFT),
  ].join('\n');
  const protos = udp ? ['tcp', 'udp'] : ['tcp'];
  const nsIp = [
    'link set lo up',
    'addr add @G@/30 dev eth0',
    'link set eth0 up',
    'route add default via @H@ dev eth0',
    // 127.0.0.0/8 at the granted loopback ports (and the loopback nameservers' port 53) goes out over
    // the pair; everything else of it stays the namespace's own. The rules must come before the
    // local table's, which is moved from 0 to 1000 for that.
    'route add 127.0.0.0/8 via @H@ dev eth0 onlink table 100',
    ...loopback.flatMap((port) => protos.map((p) => `rule add pref 100 to 127.0.0.0/8 ipproto ${p} dport ${port} table 100`)),
    ...n.loopbackNameservers.flatMap((ns) => ['udp', 'tcp'].map((p) => `rule add pref 100 to ${ns}/32 ipproto ${p} dport 53 table 100`)),
    'rule add pref 1000 table local',
    'rule del pref 0 table local',
  ].join('\n');
  const nsNft = [
    // A listen port reached over the pair is the namespace's 127.0.0.1 at that port: a guest that
    // binds 127.0.0.1 is reached as it was in the host's namespace.
    ...(listen.length === 0 ? [] : ['table ip lowcloud_nat {', `  chain pre { type nat hook prerouting priority dstnat; iifname "eth0" meta l4proto { ${l4} } th dport { ${listen.join(', ')} } dnat to 127.0.0.1; }`, '}']),
    // The grant's allow-list, as firewall.ts loads it on the host, for every socket in here.
    'table inet lowcloud {',
    `  chain guest_out { ct state established,related accept; ${n.rules.out.map((r) => `${r}; `).join('')}reject; }`,
    `  chain guest_in { ct state established,related accept; ${n.rules.in.map((r) => `${r}; `).join('')}reject; }`,
    '  chain output { type filter hook output priority 0; policy accept; jump guest_out; }',
    '  chain input { type filter hook input priority 0; policy accept; jump guest_in; }',
    '}',
  ].join('\n');
  return { hostNft, nsIp, nsNft };
}

/** The wall's shell arguments for a veth namespace (VETH_SHELL). */
export function vethArgs(n: VethNetwork): string[] {
  const { hostNft, nsIp, nsNft } = vethScripts(n);
  return [hostNft, nsIp, nsNft];
}

/**
 * The start both shells share (run inside the wall's private mount namespace and the guest's
 * cgroups): bubblewrap reports the pid on a FIFO (`--info-fd 8`) and waits on another
 * (`--block-fd 9`) before it runs anything. A shell then connects that pid's namespace, and only
 * then reports the pid to the host (fd 4, `ready`) and lets bubblewrap go. A namespace that cannot
 * be connected means `refused` and no guest code.
 */
const NS_START = [
  'ready=""',
  'refuse() { printf \'{"type": "refused", "message": "%s"}\\n\' "$(printf %s "$1" | tr -d \'"\\\\\' | tr \'\\n\' \' \')" >&4; }',
  // The FIFOs (and pasta's pid file) live on a tmpfs of this private mount namespace: nothing is left on the host.
  'd=/run/lowcloud-net',
  'mkdir -p "$d" && mount -t tmpfs -o mode=0700,size=64k lowcloud-net "$d" && mkfifo "$d/info" "$d/block" || { refuse "could not make the FIFOs for the network namespace in $d"; exit 125; }',
  // A background job reads /dev/null unless told otherwise: the guest host keeps this stdin.
  // (dash has fds 0-9 only; 3-7 are the guest host's: its saved stdin is 9 until the FIFOs take 8 and 9.)
  'exec 9<&0',
  '"$@" 0<&9 8>"$d/info" 9<"$d/block" &',
  'w=$!',
  'exec 9<&- 8<"$d/info" 9>"$d/block"',
  'pid=""; while IFS= read -r line <&8; do case $line in *child-pid*) pid=${line##*:}; pid=${pid%%,*}; pid=$(echo $pid); break;; esac; done',
  // bubblewrap failed before its child (it said why on stderr): its status is the wall's.
  '[ -n "$pid" ] || { exec 8<&- 9>&-; wait "$w"; exit $?; }',
];

/** Reports the guest host ready, lets bubblewrap go and waits for the wall to end. */
const NS_RUN = ['printf \'{"type": "ready", "pid": %s%s}\\n\' "$pid" "$ready" >&4', 'echo go >&9; exec 8<&- 9>&-', 'wait "$w"; rc=$?'];

/**
 * The wall's shell for a veth namespace. Arguments: the three scripts of vethScripts, then the
 * bubblewrap command. The interface name is the lock: `ip link add` fails with "File exists" for
 * one taken, and the next is tried (from the pid's slot, so that starts rarely collide).
 */
export const VETH_SHELL = [
  'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
  'hostnft=$1; nsip=$2; nsnft=$3; shift 3',
  ...NS_START,
  'fail() { refuse "$1: $(head -c 300 "$d/err" | tr \'\\n\' \' \')"; kill -KILL "$pid" "$w" 2>/dev/null; wait "$w"; exit 125; }',
  `i=$((pid % ${VETH_SLOTS})); k=0`,
  `until ip link add "${VETH_PREFIX}$i" type veth peer name eth0 netns "$pid" 2>"$d/err"; do grep -q "File exists" "$d/err" && [ "$k" -lt ${VETH_SLOTS} ] || fail "could not make the guest host's veth pair"; i=$(((i + 1) % ${VETH_SLOTS})); k=$((k + 1)); done`,
  `hif=${VETH_PREFIX}$i; a=$((i * 4)); net=169.254.$((a / 256)); h=$net.$((a % 256 + 1)); g=$net.$((a % 256 + 2))`,
  // Each program run costs ~10 ms here: the scripts are written by the shell and edited by one sed.
  'printf "%s\\n" "$hostnft" >"$d/host.nft"; printf "%s\\n" "$nsip" >"$d/ns.ip"; printf "%s\\n" "$nsnft" >"$d/ns.nft"; printf "addr add %s/30 dev %s\\nlink set %s up\\n" "$h" "$hif" "$hif" >"$d/host.ip"',
  'sed -i "s/@HIF@/$hif/g; s/@H@/$h/g; s/@G@/$g/g" "$d/host.nft" "$d/ns.ip" "$d/ns.nft"',
  'c=/proc/sys/net; echo 1 >$c/ipv6/conf/$hif/disable_ipv6 2>/dev/null',
  '{ echo 1 >$c/ipv4/conf/$hif/route_localnet && echo 1 >$c/ipv4/conf/$hif/forwarding && ip -batch "$d/host.ip"; } 2>"$d/err" || fail "could not set up $hif"',
  // The table's handle, from nft's echo of what it made: the shell removes its own table by it, and
  // never the table of a later guest host that took the same interface name once this pair went.
  `nft -e -a -f "$d/host.nft" >"$d/host.out" 2>"$d/err" || fail "nft refused the host's rules for $hif"`,
  `th=""; while IFS= read -r l; do case $l in "add table ip ${VETH_TABLE_PREFIX}$hif "*"# handle "*) th=\${l##* };; esac; done <"$d/host.out"; case $th in *[!0-9]*) th="";; esac`,
  // The host is told the interface: a stop removes its redirects before it signals the guest host (GuestHost.stop).
  'ready=", \\"veth\\": \\"$hif\\""',
  `untable() { if [ -n "$th" ]; then nft delete table ip handle "$th"; else nft delete table ip "${VETH_TABLE_PREFIX}$hif"; fi 2>/dev/null; }`,
  // Inside: the namespace's own sysctls (route_localnet lets 127.0.0.0/8 cross the pair), routes and rules.
  'nsenter --net="/proc/$pid/ns/net" sh -c \'echo 1 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null; echo 1 >/proc/sys/net/ipv4/conf/eth0/route_localnet && ip -batch "$1" && nft -f "$2"\' sh "$d/ns.ip" "$d/ns.nft" 2>"$d/err" || { untable; fail "could not set up the guest host\'s network namespace"; }',
  ...NS_RUN,
  // The pair goes with the namespace; the host's table is this shell's to remove.
  'untable',
  'exit $rc',
].join('\n');

/**
 * The wall's shell when the guest host gets a namespace through pasta (NS_START): pasta attaches to
 * the pid's namespace and returns once it is configured. Arguments: pasta, portArgs, the number of
 * its options, the options, then the bubblewrap command.
 */
export const PASTA_SHELL = [
  'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
  'pasta=$1; listen=$2; loopback=$3; udp=$4; n=$5; shift 5',
  'opts=""; i=0; while [ "$i" -lt "$n" ]; do opts="$opts $1"; shift; i=$((i+1)); done',
  // pasta's default for each direction is `auto` (every port bound on the other side): always given.
  // A listen port something on the host holds (the instance this one replaces, not yet stopped)
  // cannot be bound by pasta, which would go on without it: it is held inside instead (forwarded
  // out, where the nftables table refuses it), so the guest's own bind fails as it did in the
  // host's namespace, and a guest that restarts on that gets the port once it is free.
  'held() { h=$(printf %04X "$2"); awk -v p=":$h" -v st="$3" \'FNR > 1 && substr($2, length($2) - 4) == p && (st == "" || $4 == st) { f = 1 } END { exit !f }\' $1 2>/dev/null; }',
  'fwd() { fin=""; fout=""; for p in $(echo "$2" | tr , " "); do [ "$p" = none ] && continue; if held "$1" "$p" "$3"; then fout="$fout,$p"; else fin="$fin,$p"; fi; done; for p in $(echo "$loopback" | tr , " "); do [ "$p" = none ] || fout="$fout,$p"; done; fin=${fin#,}; fout=${fout#,}; echo "${fin:-none} ${fout:-none}"; }',
  'set -- $(fwd "/proc/net/tcp /proc/net/tcp6" "$listen" 0A) "$@"; opts="$opts --tcp-ports $1 --tcp-ns $2"; shift 2',
  'if [ "$udp" = 1 ]; then set -- $(fwd "/proc/net/udp /proc/net/udp6" "$listen" "") "$@"; opts="$opts --udp-ports $1 --udp-ns $2"; shift 2; else opts="$opts --udp-ports none --udp-ns none"; fi',
  ...NS_START,
  // The namespace is opened here: pasta drops CAP_SYS_PTRACE before it opens its path, and
  // bubblewrap's child is not dumpable. The launcher ignores SIGPIPE, and a shell cannot undo that; pasta takes an ignored SIGPIPE for a failed signal().
  'if ! env --default-signal=PIPE "$pasta" $opts --pid "$d/pasta.pid" --netns /proc/self/fd/9 </dev/null >/dev/null 2>"$d/err" 3<&- 4>&- 5<&- 6<&- 7>&- 8<&- 9<"/proc/$pid/ns/net"; then',
  '  refuse "pasta (package passt) could not attach to the guest host\'s network namespace: $(head -c 300 "$d/err")"; kill -KILL "$pid" "$w" 2>/dev/null; wait "$w"; exit 125',
  'fi',
  ...NS_RUN,
  // pasta holds the namespace itself, so it would never see it go: it ends with the guest host,
  // and its host ports are free again once the wall has ended (a restart binds them at once).
  'p=$(cat "$d/pasta.pid" 2>/dev/null); if [ -n "$p" ] && kill "$p" 2>/dev/null; then k=0; while [ $k -lt 100 ] && [ -e "/proc/$p" ] && ! grep -q "^$p ([^)]*) Z" "/proc/$p/stat" 2>/dev/null; do sleep 0.02; k=$((k+1)); done; fi',
  'exit $rc',
].join('\n');
