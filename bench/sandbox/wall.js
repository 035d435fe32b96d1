// bench/sandbox/wall.js: what each mechanism of the wall around a guest host adds to a start
// (issue 17), and the network candidates for a guest with a network grant; run by index.js, or
// alone: `node bench/sandbox/wall.js`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pastaBinary, probeWall, seccompProgram, wallArgs, wallCommand } from '@lowcloud/sandbox';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * What each mechanism of the wall (issue 17) adds to a start: `node -e 0` run inside the wall a
 * guest host gets (wallCommand) and inside the same wall less one mechanism, the variants
 * alternating in one loop (median of 15 each); and the network candidates for a guest with a
 * network grant, timed around /bin/true: its own namespace (unshare), a veth pair with nftables
 * inside (ip netns), each against the bare command.
 */
export async function wallMechanisms(work) {
  const { wall, reason } = probeWall();
  if (wall === null) return console.log(`wall mechanisms: no wall here (${reason})`);
  const filter = path.join(work, 'filter.bpf');
  writeFileSync(filter, seccompProgram());
  const uid = wall.mode === 'root' ? 2046820351 : null;
  const spec = { uid, ro: [], rw: [], seccompFd: 3, infoFd: null, dieWithParent: true, command: [process.execPath, '-e', '0'] };
  const full = wallCommand(wall, spec);
  const bare = [wall.bwrap, ...wallArgs(wall, spec)];
  const variants = {
    'the whole wall': full,
    'less --unshare-net (the host network namespace)': wallCommand(wall, { ...spec, network: true }),
    'less prlimit and the noexec mounts (bubblewrap alone)': bare,
    'bubblewrap alone with the whole of /usr bound (the view before)': [wall.bwrap, ...wallArgs(wall, { ...spec, ro: ['/usr'] })],
  };
  // A guest host with a network grant (issue 17), the three ways in the same loop: the host's
  // namespace (--netns host), its own over a veth pair (the default: the wall's shell makes the
  // pair and loads the rules while the bubblewrap child is blocked), its own through pasta.
  const ports = { listen: [7101], loopback: [7102], udp: false };
  if (wall.mode === 'root') {
    variants['network grant, --netns host: the host network namespace'] = wallCommand(wall, { ...spec, network: true });
    const rules = { out: ['ip daddr 127.0.0.1 tcp dport 7102 accept'], in: ['tcp dport { 7101 } accept'] };
    variants['network grant, --netns veth (default): its own over a veth pair'] = wallCommand(wall, { ...spec, infoFd: 4, network: { kind: 'veth', ports, loopbackNameservers: [], rules } });
    const pasta = pastaBinary();
    if (pasta !== null) variants['network grant, --netns pasta: its own through pasta'] = wallCommand(wall, { ...spec, infoFd: 4, network: { kind: 'pasta', pasta, ports } });
  }
  const run = (argv) => {
    const t = performance.now();
    const r = spawnSync('/bin/sh', ['-c', 'exec "$@" 3<"$0" 4>/dev/null', filter, ...argv], { env: {}, stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`wall variant exited ${r.status}: ${argv.join(' ').slice(0, 200)}`);
    return performance.now() - t;
  };
  const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  const plain = [];
  for (let i = 0; i < 15; i++) {
    plain.push(run([process.execPath, '-e', '0']));
    for (const [k, argv] of Object.entries(variants)) times[k].push(run(argv));
  }
  console.log(`wall mechanisms, node -e 0 inside (alternating, median of 15; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}): no wall ${median(plain).toFixed(1)} ms`);
  const whole = median(times['the whole wall']);
  for (const [k, xs] of Object.entries(times)) console.log(`  ${k}: ${median(xs).toFixed(1)} ms${k === 'the whole wall' ? '' : ` (the whole wall ${(whole - median(xs) >= 0 ? '+' : '')}${(whole - median(xs)).toFixed(1)} ms)`}`);
  // The network candidates for a guest with a network grant: set-up cost around /bin/true.
  const once = (argv) => {
    const t = performance.now();
    // Bounded: pasta as root waits on its child here and never returns (then: "failed here").
    const r = spawnSync(argv[0], argv.slice(1), { stdio: 'ignore', timeout: 5000 });
    return r.status === 0 ? performance.now() - t : NaN;
  };
  const veth = (i) => {
    const ns = `lcb${process.pid}-${i}`;
    const sh = `set -e; ip netns add ${ns}; ip link add v${i}h type veth peer name v${i}g netns ${ns}; ip addr add 10.250.${i}.1/30 dev v${i}h; ip link set v${i}h up; ip -n ${ns} addr add 10.250.${i}.2/30 dev v${i}g; ip -n ${ns} link set v${i}g up; ip -n ${ns} link set lo up; ip -n ${ns} route add default via 10.250.${i}.1; ip netns exec ${ns} nft add table inet g; ip netns exec ${ns} /bin/true; ip link del v${i}h; ip netns del ${ns}`;
    return once(['/bin/sh', '-c', sh]);
  };
  const cands = { 'bare /bin/true': () => once(['/bin/true']), 'own empty namespace (unshare --net)': () => once(['/usr/bin/unshare', '--net', '/bin/true']) };
  // pasta (Debian's passt) as the wall uses it is timed above, inside the whole wall (attached by
  // pid to a blocked bubblewrap child); run as root around a command it did not return here.
  if (wall.mode === 'root' && existsSync('/usr/sbin/ip') && existsSync('/usr/sbin/nft')) cands['veth pair + nftables in its own namespace (ip netns)'] = (i) => veth(i % 200);
  const ct = Object.fromEntries(Object.keys(cands).map((k) => [k, []]));
  for (let i = 0; i < 15; i++) for (const [k, f] of Object.entries(cands)) if (!ct[k].some(Number.isNaN)) ct[k].push(f(i));
  console.log('network candidates for a guest with a network grant, set-up around /bin/true (median of 15):');
  for (const [k, xs] of Object.entries(ct)) console.log(`  ${k}: ${xs.some(Number.isNaN) ? 'failed or did not finish within 5 s here' : `${median(xs).toFixed(1)} ms`}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-wall-'));
  try {
    await wallMechanisms(work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
