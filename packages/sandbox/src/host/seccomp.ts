/**
 * The seccomp layer of the guest host's wall: a classic-BPF deny-list that bubblewrap installs
 * (`--seccomp FD`) right before it runs the guest host.
 *
 * Written here rather than generated with libseccomp because there is no npm package for it and
 * Debian's (libseccomp, python3-seccomp) would need a native addon or a Python run at every start;
 * a deny-list is a few dozen instructions whose layout is fixed by the kernel ABI
 * (`struct seccomp_data`, `struct sock_filter`), checked here against the syscall tables of both
 * architectures Node.js ships for on Linux and asserted end to end by test/sandbox/isolation.test.ts.
 *
 * Shape: the architecture must be x86_64 or aarch64 (anything else, e.g. i386 syscalls through
 * `int 0x80`, kills the process); x32 syscall numbers are refused; the denied calls fail with EPERM
 * (clone3 with ENOSYS, so the C library falls back to clone, whose namespace flags are refused);
 * everything else is allowed.
 */

// <linux/audit.h>
const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_AARCH64 = 0xc00000b7;
// <linux/seccomp.h>
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;
// <linux/bpf_common.h>
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
const X32_SYSCALL_BIT = 0x40000000;
/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (NEWTIME exists for clone3 and unshare only) */
const CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

/** What a guest host never needs: [name, x86_64 number, aarch64 number] (from asm/unistd_64.h, asm-generic/unistd.h). */
const DENIED: readonly [string, number, number | null][] = [
  ['ptrace', 101, 117],
  ['process_vm_readv', 310, 270],
  ['process_vm_writev', 311, 271],
  ['kcmp', 312, 272],
  ['mount', 165, 40],
  ['umount2', 166, 39],
  ['pivot_root', 155, 41],
  ['chroot', 161, 51],
  ['open_tree', 428, 428],
  ['move_mount', 429, 429],
  ['fsopen', 430, 430],
  ['fsconfig', 431, 431],
  ['fsmount', 432, 432],
  ['fspick', 433, 433],
  ['mount_setattr', 442, 442],
  ['unshare', 272, 97],
  ['setns', 308, 268],
  ['bpf', 321, 280],
  ['perf_event_open', 298, 241],
  ['userfaultfd', 323, 282],
  ['kexec_load', 246, 104],
  ['kexec_file_load', 320, 294],
  ['init_module', 175, 105],
  ['finit_module', 313, 273],
  ['delete_module', 176, 106],
  ['keyctl', 250, 219],
  ['add_key', 248, 217],
  ['request_key', 249, 218],
  ['swapon', 167, 224],
  ['swapoff', 168, 225],
  ['reboot', 169, 142],
  ['open_by_handle_at', 304, 265],
  ['name_to_handle_at', 303, 264],
  ['acct', 163, 89],
  ['quotactl', 179, 60],
  ['settimeofday', 164, 170],
  ['clock_settime', 227, 112],
  ['clock_adjtime', 305, 266],
  ['adjtimex', 159, 171],
  ['syslog', 103, 116],
  ['vhangup', 153, 58],
  ['lookup_dcookie', 212, 18],
  ['io_uring_setup', 425, 425],
  ['iopl', 172, null],
  ['ioperm', 173, null],
  ['uselib', 134, null],
];
const CLONE: readonly [number, number] = [56, 220];
const CLONE3 = 435;

export const DENIED_SYSCALLS: readonly string[] = [...DENIED.map((d) => d[0]), 'clone3', 'clone with namespace flags'];

type Insn = [code: number, jt: number, jf: number, k: number];

function archBlock(which: 0 | 1): Insn[] {
  const nrs = DENIED.map((d) => d[1 + which]).filter((n): n is number => n !== null);
  const out: Insn[] = [[LD_W_ABS, 0, 0, 0]]; // seccomp_data.nr
  if (which === 0) out.push([JGE_K, 0, 1, X32_SYSCALL_BIT], [RET_K, 0, 0, RET_KILL_PROCESS]);
  // Each denied number jumps to the EPERM return at the end of the list.
  nrs.forEach((nr, i) => out.push([JEQ_K, nrs.length - i + 6, 0, nr]));
  // clone3 -> ENOSYS; clone: refuse namespace flags (args[0], low 32 bits at offset 16 on little-endian).
  out.push([JEQ_K, 0, 1, CLONE3], [RET_K, 0, 0, RET_ERRNO | ENOSYS]);
  out.push([JEQ_K, 1, 0, CLONE[which]], [RET_K, 0, 0, RET_ALLOW], [LD_W_ABS, 0, 0, 16], [JSET_K, 1, 0, CLONE_NAMESPACES], [RET_K, 0, 0, RET_ALLOW]);
  out.push([RET_K, 0, 0, RET_ERRNO | EPERM]);
  return out;
}

/** The compiled program, as bubblewrap reads it from its `--seccomp` fd (host byte order). */
export function seccompProgram(): Buffer {
  const x86 = archBlock(0);
  const arm = archBlock(1);
  const prog: Insn[] = [
    [LD_W_ABS, 0, 0, 4], // seccomp_data.arch
    [JEQ_K, 2, 0, AUDIT_ARCH_X86_64],
    [JEQ_K, 1 + x86.length, 0, AUDIT_ARCH_AARCH64],
    [RET_K, 0, 0, RET_KILL_PROCESS],
    ...x86,
    ...arm,
  ];
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, jt, jf, k], i) => {
    if (jt > 255 || jf > 255) throw new Error('seccomp program: jump too far');
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return buf;
}
