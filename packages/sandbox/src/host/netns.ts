import fs from 'node:fs';
import path from 'node:path';
import type { NetworkAccess } from '@lowcloud/api';
import { parseIp } from '../common/ip.js';

/**
 * The network namespace of a guest host with a network grant (issue 17), when asked for
 * (`lowcloud agent --netns pasta`; why it is not the default: grants/isolation.ts). Its own, like the empty
 * one of a guest host without the grant, so that `/proc/net` inside shows only its own sockets and
 * no abstract socket of the host; reached only through pasta (Debian's `passt` package), which
 * attaches to it before any guest code runs:
 *
 * - the granted listen ports are bound on the host by pasta and forwarded into the namespace
 *   (`-t`, `-u`): the agent, other guests and tests reach them at the host's 127.0.0.1 as before;
 * - the ports of granted loopback targets (another guest at 127.0.0.1:7101) are bound on the
 *   namespace's loopback and forwarded to the host's loopback (`-T`, `-U`); nothing else of the
 *   host's loopback is reachable (no `auto`, no gateway mapped to it: `--no-map-gw`);
 * - other targets go out through pasta's tap device, as connections pasta makes on the host.
 *
 * pasta is started by the wall's own shell, which the launcher already moved into the guest's
 * cgroups: every socket it opens for the guest host is in the guest's cgroup, so the network
 * grant's nftables table (firewall.ts) filters them as it filtered the guest host's own, and its
 * memory and tasks count against the guest's. It is paid once per guest host, not per call.
 *
 * Measured alternative (docs/performance.md): a veth pair with nftables inside the namespace costs
 * less per start but needs forwarding, NAT and route_localnet on the host for loopback and outside
 * targets: host-wide settings a guest's start should not change.
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
  pasta: string;
  ports: NetworkPorts;
}

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
 * The wall's shell when the guest host gets a namespace through pasta (root mode, run inside the
 * wall's private mount namespace and the guest's cgroups): bubblewrap reports the pid on a FIFO
 * (`--info-fd 8`) and waits on another (`--block-fd 9`) before it runs anything; pasta attaches
 * to that pid's namespace and returns once it is configured; only then is the pid reported to the
 * host (fd 4, `ready`) and bubblewrap let go. A pasta that fails means `refused` and no guest code.
 * Arguments: pasta, portArgs, the number of its options, the options, then the bubblewrap command.
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
  'refuse() { printf \'{"type": "refused", "message": "%s"}\\n\' "$(printf %s "$1" | tr -d \'"\\\\\' | tr \'\\n\' \' \')" >&4; }',
  // The FIFOs and pasta's pid file live on a tmpfs of this private mount namespace: nothing is left on the host.
  'd=/run/lowcloud-net',
  'mkdir -p "$d" && mount -t tmpfs -o mode=0700,size=64k lowcloud-net "$d" && mkfifo "$d/info" "$d/block" || { refuse "could not make the FIFOs for pasta in $d"; exit 125; }',
  // A background job reads /dev/null unless told otherwise: the guest host keeps this stdin.
  // (dash has fds 0-9 only; 3-7 are the guest host's: its saved stdin is 9 until the FIFOs take 8 and 9.)
  'exec 9<&0',
  '"$@" 0<&9 8>"$d/info" 9<"$d/block" &',
  'w=$!',
  'exec 9<&- 8<"$d/info" 9>"$d/block"',
  'pid=""; while IFS= read -r line <&8; do case $line in *child-pid*) pid=${line##*:}; pid=${pid%%,*}; pid=$(echo $pid); break;; esac; done',
  // bubblewrap failed before its child (it said why on stderr): its status is the wall's.
  '[ -n "$pid" ] || { exec 8<&- 9>&-; wait "$w"; exit $?; }',
  // The namespace is opened here: pasta drops CAP_SYS_PTRACE before it opens its path, and
  // bubblewrap's child is not dumpable. The launcher ignores SIGPIPE, and a shell cannot undo that; pasta takes an ignored SIGPIPE for a failed signal().
  'if ! env --default-signal=PIPE "$pasta" $opts --pid "$d/pasta.pid" --netns /proc/self/fd/9 </dev/null >/dev/null 2>"$d/err" 3<&- 4>&- 5<&- 6<&- 7>&- 8<&- 9<"/proc/$pid/ns/net"; then',
  '  refuse "pasta (package passt) could not attach to the guest host\'s network namespace: $(head -c 300 "$d/err")"; kill -KILL "$pid" "$w" 2>/dev/null; wait "$w"; exit 125',
  'fi',
  'printf \'{"type": "ready", "pid": %s}\\n\' "$pid" >&4',
  'echo go >&9; exec 8<&- 9>&-',
  // pasta holds the namespace itself, so it would never see it go: it ends with the guest host.
  'wait "$w"; rc=$?',
  // ... and its host ports are free again once the wall has ended (a restart binds them at once).
  'p=$(cat "$d/pasta.pid" 2>/dev/null); if [ -n "$p" ] && kill "$p" 2>/dev/null; then k=0; while [ $k -lt 100 ] && [ -e "/proc/$p" ] && ! grep -q "^$p ([^)]*) Z" "/proc/$p/stat" 2>/dev/null; do sleep 0.02; k=$((k+1)); done; fi',
  'exit $rc',
].join('\n');
