import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseConnectTarget, type NetworkGrant } from '@lowcloud/api';
import { DEFAULT_LIMITS, isolationReport, type Wall, type WallFacts } from './isolation.js';
import { allowList } from './firewall.js';
import { namespacePorts, PASTA_SHELL, pastaArgs, VETH_SHELL, vethScripts, type VethNetwork } from './netns.js';

const ports = (g: NetworkGrant) => namespacePorts({ listen: g.listen, connect: g.connect.map((t) => parseConnectTarget(t)), udp: g.udp === true });

describe("namespacePorts: what pasta forwards for a network grant", () => {
  it('listen ports in; only loopback targets (and names, which may resolve there) out to the host loopback', () => {
    expect(ports({ listen: [7100, 7000, 7100], connect: ['127.0.0.1:7101', '[::1]:7102', '10.0.0.6:5432', '10.0.0.0/8:6379', 'db.internal:5433', '127.0.0.0/8:7103'] })).toEqual({
      listen: [7000, 7100],
      loopback: [5433, 7101, 7102, 7103],
      udp: false,
    });
  });

  it('a port both listened on and connected to is not forwarded out (pasta would hold the port the guest binds)', () => {
    expect(ports({ listen: [7101], connect: ['127.0.0.1:7101'], udp: true })).toEqual({ listen: [7101], loopback: [], udp: true });
  });

  it('never leaves a direction to pasta\'s default (`auto`: every port bound on the other side)', () => {
    const shell = PASTA_SHELL;
    for (const opt of ['--tcp-ports', '--tcp-ns', '--udp-ports', '--udp-ns']) expect(shell).toContain(opt);
    expect(pastaArgs()).toEqual(expect.arrayContaining(['--no-map-gw', '--netns-only']));
  });
});

describe('vethScripts: what the wall shell loads for a veth namespace', () => {
  const grant = { listen: [7100], connect: ['127.0.0.1:7101', '10.0.0.6:5432', 'db.internal:5433'], udp: false };
  const access = { listen: grant.listen, connect: grant.connect.map((t) => parseConnectTarget(t)), udp: false };
  const veth: VethNetwork = { kind: 'veth', ports: ports(grant), loopbackNameservers: ['127.0.0.53'], rules: allowList(access, ['127.0.0.53']) };
  const v = vethScripts(veth);

  it("the host's table sends the host's own addresses at a listen port to the guest, and only those", () => {
    expect(v.hostNft).toContain('chain pre { type nat hook prerouting priority dstnat; fib daddr type local meta l4proto { tcp } th dport { 7100 } dnat to @G@; }');
    expect(v.hostNft).toContain('chain out { type nat hook output priority -100; fib daddr type local meta l4proto { tcp } th dport { 7100 } dnat to @G@; }');
    // Replaced, not added to, when a killed shell left one under the same interface name.
    expect(v.hostNft.split('\n').slice(0, 3)).toEqual(['table ip lowcloud_veth_@HIF@ {', '}', 'delete table ip lowcloud_veth_@HIF@']);
  });

  it('inside, only the granted loopback ports (and the loopback nameserver at 53) are routed out of 127.0.0.0/8, before the local table', () => {
    const lines = v.nsIp.split('\n');
    expect(lines.filter((l) => l.startsWith('rule add pref 100 '))).toEqual([
      'rule add pref 100 to 127.0.0.0/8 ipproto tcp dport 5433 table 100',
      'rule add pref 100 to 127.0.0.0/8 ipproto tcp dport 7101 table 100',
      'rule add pref 100 to 127.0.0.53/32 ipproto udp dport 53 table 100',
      'rule add pref 100 to 127.0.0.53/32 ipproto tcp dport 53 table 100',
    ]);
    expect(lines.slice(-2)).toEqual(['rule add pref 1000 table local', 'rule del pref 0 table local']);
  });

  it("inside, the grant's allow-list filters every socket, and a listen port reached over the pair is the namespace's 127.0.0.1", () => {
    expect(v.nsNft).toContain('ip daddr 127.0.0.1 tcp dport 7101 accept; ip daddr 10.0.0.6 tcp dport 5432 accept; tcp dport 5433 accept;');
    expect(v.nsNft).toContain('chain output { type filter hook output priority 0; policy accept; jump guest_out; }');
    expect(v.nsNft).toContain('iifname "eth0" meta l4proto { tcp } th dport { 7100 } dnat to 127.0.0.1;');
    expect(v.nsNft).not.toContain('udp dport 7100');
  });

  it('the shell puts the interface and its addresses in, and removes its own host table (by the handle nft echoed) when the wall ends', () => {
    expect(VETH_SHELL).toContain('sed -i "s/@HIF@/$hif/g; s/@H@/$h/g; s/@G@/$g/g"');
    expect(VETH_SHELL.split('\n').at(-2)).toBe('untable');
    // The handle of the table it made, read from nft's echo (`nft -e -a`), with dash as the wall runs it.
    const read = VETH_SHELL.split('\n').find((l) => l.startsWith('th=""'));
    const echo = ['add table ip lowcloud_veth_lcv7 # handle 41', 'add table ip lowcloud_veth_lcv7 # handle 42', 'add chain ip lowcloud_veth_lcv7 pre { type nat hook prerouting priority dstnat; policy accept; } # handle 1', 'add table ip lowcloud_veth_refuse # handle 44', 'add table ip lowcloud_veth_lcv71 # handle 45'];
    const got = execFileSync('/bin/sh', ['-c', `hif=lcv7; d=$(mktemp -d); printf '%s\\n' "$@" >"$d/host.out"; ${read}; rm -r "$d"; echo "$th"`, 'sh', ...echo]).toString();
    expect(got).toBe('42\n');
  });

  it('with listen ports, the shared table refuses a forwarded, redirected connection whose pair is gone, at once; without, it is not loaded', () => {
    expect(v.hostNft).toContain('table ip lowcloud_veth_refuse {');
    expect(v.hostNft).toContain('chain forward { type filter hook forward priority 0; ct status dnat ip daddr 169.254.0.0/17 oifname != "lcv*" meta l4proto tcp reject with tcp reset; ct status dnat ip daddr 169.254.0.0/17 oifname != "lcv*" reject; }');
    // Not the output hook: there `oifname` is the route's before the redirect (lo), which refused every live pair.
    expect(v.hostNft).not.toContain('hook output priority 0');
    expect(vethScripts({ ...veth, ports: { ...veth.ports, listen: [] } }).hostNft).not.toContain('refuse');
  });
});

describe('the wall shell: a listen port the host still holds is held inside instead', () => {
  it('forwards a free port in, and a held one (and the loopback targets) out', async () => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const held = (server.address() as net.AddressInfo).port;
    try {
      const free = held === 65535 ? held - 1 : held + 1;
      const fns = PASTA_SHELL.split('\n').filter((l) => /^(held|fwd)\(\)/.test(l)).join('\n');
      const out = execFileSync('/bin/sh', ['-c', `${fns}\nloopback=7300; fwd "/proc/net/tcp /proc/net/tcp6" "${free},${held}" 0A`]).toString().trim();
      expect(out).toBe(`${free} ${held},7300`);
    } finally {
      server.close();
    }
  });
});

describe('the isolation report line of a network-granted guest host', () => {
  const wall: Wall = { mode: 'root', bwrap: 'bwrap', setpriv: 'setpriv', prlimit: 'prlimit', unshare: 'unshare', proven: { capEffZero: true, noNewPrivs: true, seccomp: true, viewHidden: true, uidChanged: true } };
  const facts = (network: WallFacts['network']): WallFacts => ({ network, limits: DEFAULT_LIMITS, pidsCgroup: true });

  it("the host's namespace is said, with an advisory line that /proc/net lists the host's sockets and why", () => {
    const r = isolationReport(wall, '', 2046820352, facts({ ns: 'host', hostWhy: 'pasta is not installed (Debian/Ubuntu package passt)' }));
    expect(r[0]?.mechanism).toContain("the host's network namespace (the network grant's kernel layer filters it)");
    expect(r).toContainEqual({ level: 'advisory', mechanism: "/proc/net in the guest host lists the host's sockets (the agent's, other guests'): its network grant keeps the host's network namespace because pasta is not installed (Debian/Ubuntu package passt)" });
  });

  it('its own namespace over a veth pair is said with what is redirected and routed, and no advisory line', () => {
    const r = isolationReport(wall, '', 2046820352, facts({ ns: 'veth', ports: { listen: [7100], loopback: [7101], udp: true } }));
    expect(r[0]?.mechanism).toContain("a network namespace of its own (/proc/net shows only its sockets), reached over a veth pair with the network grant's nftables allow-list inside it: host ports [7100] redirected in, loopback ports [7101] routed out to the host's loopback, TCP and UDP");
    expect(r.some((l) => l.level === 'advisory')).toBe(false);
  });

  it('a veth namespace with listen ports says, in an advisory line, by which interfaces other machines do not reach them and the fix', () => {
    const r = isolationReport(wall, '', 2046820352, facts({ ns: 'veth', ports: { listen: [7100, 7200], loopback: [], udp: false }, closedTo: ['eth0', 'eth1'] }));
    expect(r).toContainEqual({
      level: 'advisory',
      mechanism: 'its listen ports [7100, 7200] are reached from this machine and its guests, not from other machines by eth0, eth1: the kernel forwards into its veth pair only from an interface with forwarding on (sysctl net.ipv4.conf.eth0.forwarding=1, the operator\'s choice), or run the agent with --netns host',
    });
    // Nothing to say without listen ports, or where every interface forwards.
    expect(isolationReport(wall, '', 2046820352, facts({ ns: 'veth', ports: { listen: [], loopback: [7101], udp: false }, closedTo: ['eth0'] })).some((l) => l.level === 'advisory')).toBe(false);
    expect(isolationReport(wall, '', 2046820352, facts({ ns: 'veth', ports: { listen: [7100], loopback: [], udp: false }, closedTo: [] })).some((l) => l.level === 'advisory')).toBe(false);
  });

  it('its own namespace through pasta is said with what is forwarded, and no advisory line', () => {
    const r = isolationReport(wall, '', 2046820352, facts({ ns: 'pasta', ports: { listen: [7100], loopback: [7101, 7102], udp: false } }));
    expect(r[0]?.mechanism).toContain("a network namespace of its own (/proc/net shows only its sockets), reached through pasta in its cgroup: host ports [7100] forwarded in, loopback ports [7101, 7102] out to the host's loopback, TCP only");
    expect(r.some((l) => l.level === 'advisory')).toBe(false);
  });
});
