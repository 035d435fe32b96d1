/**
 * The guest host's launcher (guest-host.ts). As root with kernel objects: a two-line shell launcher joins the guest's cgroups *before* it
 * execs the wall (so everything after is born confined; a refused write means exit 125 and no
 * guest code), and stays behind as the guest host's root-owned parent to remove its cgroups and
 * nftables table when it ends, also when no agent is watching. Paths and names are arguments,
 * never part of the script.
 */
const LAUNCHER = [
  // Not exported: the guest host gets no environment. SIGPIPE ignored: the report pipe's reader
  // (the agent) may be gone, and the cleanup below must still run.
  "PATH=/usr/sbin:/usr/bin:/sbin:/bin; trap '' PIPE; umask 077",
  'n=$1; nft=$2; table=$3; oom=$4; rec=$5; drain=$6; shift 6',
  // The output pipes (host/output-pump.ts) hold 1 MiB while no agent reads them, not 64 KiB:
  // F_SETPIPE_SZ (1031) has no shell or Node.js spelling; perl is in every Debian (perl-base).
  '[ "$rec" = - ] || perl -e \'fcntl(STDOUT, 1031, 1048576); fcntl(STDERR, 1031, 1048576)\' 2>/dev/null',
  'dirs=""; i=0; while [ "$i" -lt "$n" ]; do dirs="$dirs $1"; shift; i=$((i+1)); done',
  // The inner shell joins and execs; without the wall it reports its own pid (bubblewrap does otherwise).
  'sh -c \'for d in $1; do echo $$ 2>/dev/null >"$d/cgroup.procs" || { echo "{\\"type\\": \\"refused\\", \\"message\\": \\"the kernel refused to move the guest host into $d\\"}" >&4; exit 125; }; done; shift; [ "$1" = --pid ] && { shift; echo "{\\"type\\": \\"ready\\", \\"pid\\": $$}" >&4; exec "$@" 4>&-; }; exec "$@"\' sh "$dirs" "$@"',
  'rc=$?',
  // The guest host's exit record came down a pipe (fd 7, common/protocol.ts GUEST_HOST_FD.exit):
  // at most 16 KiB of it reaches the run directory, written here, outside the wall.
  '[ "$rec" = - ] || dd if=/proc/self/fd/7 of="$rec" iflag=nonblock bs=16384 count=1 2>/dev/null',
  // What is still in its output pipes (no agent read it) would go with the pipes: one read takes
  // all of a pipe (at most its 1 MiB) into a file beside them, which the host appends to the log.
  'case $drain in *1*) dd if=/proc/self/fd/1 of="${rec%/*}/output-1.tail" iflag=nonblock bs=1048576 count=1 2>/dev/null;; esac',
  'case $drain in *2*) dd if=/proc/self/fd/2 of="${rec%/*}/output-2.tail" iflag=nonblock bs=1048576 count=1 2>/dev/null;; esac',
  // The kernel's OOM kill is read before the cgroup goes, and told to whoever still listens, and
  // to a file in the run directory for an agent that re-attached (it holds no pipe to this shell).
  'for d in $dirs; do if grep -qsE "^oom_kill [1-9]" "$d/memory.events" "$d/memory.oom_control"; then echo \'{"type": "oom"}\' >&4; [ "$oom" = - ] || echo \'{"type": "oom"}\' >"$oom"; break; fi; done',
  '[ "$table" = - ] || "$nft" delete table inet "$table" 2>/dev/null',
  // The wall has ended, and with it the guest host's pid namespace: what is still in its cgroups is
  // left over, and would hold them for good. Seen: bubblewrap's child, cloned and waiting for its
  // parent's go (an eventfd, before it asks to die with its parent), when its parent died first
  // (its report's reader had gone: an agent or a `lowcloud run` ended while the host started).
  // cgroup.kill where the kernel has it (v2, 5.14+), else each pid the cgroup lists (v1).
  'for d in $dirs; do if [ -e "$d/cgroup.kill" ]; then echo 1 >"$d/cgroup.kill"; else while read -r p; do kill -KILL "$p"; done <"$d/cgroup.procs"; fi; done 2>/dev/null',
  'for d in $dirs; do k=0; while [ -d "$d" ] && [ $k -lt 40 ] && ! rmdir "$d" 2>/dev/null; do sleep 0.05; k=$((k+1)); done; done',
  'exit $rc',
].join('\n');

/**
 * The launcher's arguments. It reports on fd 4 in the protocol of common/protocol.ts (`ready`,
 * `refused`, `oom`); `oomFile`: where it also records the `oom` message (in the agent's own run
 * directory, never the guest's) for a host that re-attached and holds no pipe to it; `exitFile`:
 * where it writes the exit record the guest host sent down fd 7 (bounded), once it has ended, and
 * beside it what is left in the output pipes on `drainFds` (host/output-pump.ts).
 */
export function launcherArgs(cgroupDirs: string[], firewall: { nft: string; table: string } | null, reportsOwnPid: boolean, oomFile: string | null, exitFile: string | null, drainFds: (1 | 2)[], command: string[]): string[] {
  for (const d of cgroupDirs) if (/\s/.test(d)) throw new TypeError(`cgroup path with white space: ${d}`); // programmer error: names are ours
  return ['-c', LAUNCHER, 'sh', String(cgroupDirs.length), firewall?.nft ?? '-', firewall?.table ?? '-', oomFile ?? '-', exitFile ?? '-', exitFile === null || drainFds.length === 0 ? '-' : drainFds.join(''), ...cgroupDirs, ...(reportsOwnPid ? ['--pid'] : []), ...command];
}
