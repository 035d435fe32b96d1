/**
 * The seccomp layer of the guest host's wall: a classic-BPF allow-list that bubblewrap installs
 * (`--seccomp FD`) right before it runs setpriv and then the guest host.
 *
 * Default deny, modelled on Docker's default profile and systemd's `@system-service` set, less
 * what a guest host never needs (System V IPC and POSIX message queues, Linux AIO and io_uring,
 * mknod, fanotify, personality, modify_ldt, NUMA placement, process_madvise/pidfd_getfd, the mount
 * API, keyrings, BPF, perf, ptrace and every administrative call). What is listed was measured by
 * running the sandbox tests and real guests under it; setpriv runs under the filter too (it
 * switches uid and drops capabilities), hence the set*id and capset calls, which do nothing once
 * the capabilities are gone.
 *
 * Written here rather than generated with libseccomp because there is no npm package for it and
 * Debian's (libseccomp, python3-seccomp) would need a native addon or a Python run at every start;
 * the layout is fixed by the kernel ABI (`struct seccomp_data`, `struct sock_filter`), the numbers
 * come from asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64), and
 * packages/sandbox/src/host/seccomp.test.ts interprets the program for every listed call.
 *
 * Shape, per architecture:
 * - the architecture must be x86_64 or aarch64 (anything else, e.g. i386 calls through
 *   `int 0x80`, kills the process); x32 numbers kill it too;
 * - `clone` with a namespace flag: EPERM; `clone3`: ENOSYS (its flags live in memory a filter
 *   cannot read; the C library falls back to clone);
 * - `socket`: only AF_INET and AF_INET6 (no AF_UNIX to reach abstract or host-path sockets, no
 *   netlink, vsock or packet sockets); `socketpair` stays (AF_UNIX pairs reach nobody);
 * - a listed call: allowed;
 * - a number past the newest this table knows: ENOSYS, so a C library that tries a call newer
 *   than this list falls back, as it does on an older kernel (systemd does the same);
 * - anything else: EPERM.
 *
 * The kernel caches the verdict of calls whose verdict does not depend on their arguments (5.11+),
 * so the length of the list costs nothing per call after the first.
 */

// <linux/audit.h>
export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_AARCH64 = 0xc00000b7;
// <linux/seccomp.h>
export const RET_KILL_PROCESS = 0x80000000;
export const RET_ERRNO = 0x00050000;
export const RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;
// <linux/bpf_common.h>
const LD_W_ABS = 0x20;
const JA = 0x05;
const JEQ_K = 0x15;
const JGT_K = 0x25;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
// struct seccomp_data: nr, arch, instruction_pointer, args[6] (the low 32 bits of args[0] on little-endian)
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;
export const X32_SYSCALL_BIT = 0x40000000;
/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (NEWTIME exists for clone3 and unshare only) */
export const CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
/** AF_INET, AF_INET6: the only families `socket` may make. */
export const SOCKET_FAMILIES: readonly number[] = [2, 10];

/** The allowed calls: [name, x86_64 number, aarch64 number] (null: the call does not exist there). */
export const ALLOWED: readonly (readonly [string, number | null, number | null])[] = [
  ['accept', 43, 202], ['accept4', 288, 242], ['access', 21, null], ['alarm', 37, null], ['arch_prctl', 158, null], ['bind', 49, 200],
  ['brk', 12, 214], ['cachestat', 451, 451], ['capget', 125, 90], ['capset', 126, 91], ['chdir', 80, 49], ['chmod', 90, null], ['chown', 92, null],
  ['clock_getres', 229, 114], ['clock_gettime', 228, 113], ['clock_nanosleep', 230, 115], ['close', 3, 57], ['close_range', 436, 436],
  ['connect', 42, 203], ['copy_file_range', 326, 285], ['creat', 85, null], ['dup', 32, 23], ['dup2', 33, null], ['dup3', 292, 24],
  ['epoll_create', 213, null], ['epoll_create1', 291, 20], ['epoll_ctl', 233, 21], ['epoll_pwait', 281, 22], ['epoll_pwait2', 441, 441],
  ['epoll_wait', 232, null], ['eventfd', 284, null], ['eventfd2', 290, 19], ['execve', 59, 221], ['execveat', 322, 281], ['exit', 60, 93],
  ['exit_group', 231, 94], ['faccessat', 269, 48], ['faccessat2', 439, 439], ['fadvise64', 221, 223], ['fallocate', 285, 47], ['fchdir', 81, 50],
  ['fchmod', 91, 52], ['fchmodat', 268, 53], ['fchmodat2', 452, 452], ['fchown', 93, 55], ['fchownat', 260, 54], ['fcntl', 72, 25],
  ['fdatasync', 75, 83], ['fgetxattr', 193, 10], ['flistxattr', 196, 13], ['flock', 73, 32], ['fork', 57, null], ['fremovexattr', 199, 16],
  ['fsetxattr', 190, 7], ['fstat', 5, 80], ['fstatfs', 138, 44], ['fsync', 74, 82], ['ftruncate', 77, 46], ['futex', 202, 98],
  ['futex_requeue', 456, 456], ['futex_wait', 455, 455], ['futex_waitv', 449, 449], ['futex_wake', 454, 454], ['futimesat', 261, null],
  ['getcpu', 309, 168], ['getcwd', 79, 17], ['getdents', 78, null], ['getdents64', 217, 61], ['getegid', 108, 177], ['geteuid', 107, 175],
  ['getgid', 104, 176], ['getgroups', 115, 158], ['getitimer', 36, 102], ['getpeername', 52, 205], ['getpgid', 121, 155], ['getpgrp', 111, null],
  ['getpid', 39, 172], ['getppid', 110, 173], ['getpriority', 140, 141], ['getrandom', 318, 278], ['getresgid', 120, 150], ['getresuid', 118, 148],
  ['getrlimit', 97, 163], ['get_robust_list', 274, 100], ['getrusage', 98, 165], ['getsid', 124, 156], ['getsockname', 51, 204],
  ['getsockopt', 55, 209], ['gettid', 186, 178], ['gettimeofday', 96, 169], ['getuid', 102, 174], ['getxattr', 191, 8],
  ['inotify_add_watch', 254, 27], ['inotify_init', 253, null], ['inotify_init1', 294, 26], ['inotify_rm_watch', 255, 28], ['ioctl', 16, 29],
  ['ioprio_get', 252, 31], ['ioprio_set', 251, 30], ['kill', 62, 129], ['landlock_add_rule', 445, 445], ['landlock_create_ruleset', 444, 444],
  ['landlock_restrict_self', 446, 446], ['lchown', 94, null], ['lgetxattr', 192, 9], ['link', 86, null], ['linkat', 265, 37], ['listen', 50, 201],
  ['listxattr', 194, 11], ['llistxattr', 195, 12], ['lremovexattr', 198, 15], ['lseek', 8, 62], ['lsetxattr', 189, 6], ['lstat', 6, null],
  ['madvise', 28, 233], ['map_shadow_stack', 453, 453], ['membarrier', 324, 283], ['memfd_create', 319, 279], ['mincore', 27, 232],
  ['mkdir', 83, null], ['mkdirat', 258, 34], ['mlock', 149, 228], ['mlock2', 325, 284], ['mlockall', 151, 230], ['mmap', 9, 222],
  ['mprotect', 10, 226], ['mremap', 25, 216], ['mseal', 462, 462], ['msync', 26, 227], ['munlock', 150, 229], ['munlockall', 152, 231],
  ['munmap', 11, 215], ['nanosleep', 35, 101], ['newfstatat', 262, 79], ['open', 2, null], ['openat', 257, 56], ['openat2', 437, 437],
  ['pause', 34, null], ['pidfd_open', 434, 434], ['pidfd_send_signal', 424, 424], ['pipe', 22, null], ['pipe2', 293, 59], ['pkey_alloc', 330, 289],
  ['pkey_free', 331, 290], ['pkey_mprotect', 329, 288], ['poll', 7, null], ['ppoll', 271, 73], ['prctl', 157, 167], ['pread64', 17, 67],
  ['preadv', 295, 69], ['preadv2', 327, 286], ['prlimit64', 302, 261], ['pselect6', 270, 72], ['pwrite64', 18, 68], ['pwritev', 296, 70],
  ['pwritev2', 328, 287], ['read', 0, 63], ['readahead', 187, 213], ['readlink', 89, null], ['readlinkat', 267, 78], ['readv', 19, 65],
  ['recvfrom', 45, 207], ['recvmmsg', 299, 243], ['recvmsg', 47, 212], ['removexattr', 197, 14], ['rename', 82, null], ['renameat', 264, 38],
  ['renameat2', 316, 276], ['restart_syscall', 219, 128], ['rmdir', 84, null], ['rseq', 334, 293], ['rt_sigaction', 13, 134],
  ['rt_sigpending', 127, 136], ['rt_sigprocmask', 14, 135], ['rt_sigqueueinfo', 129, 138], ['rt_sigreturn', 15, 139], ['rt_sigsuspend', 130, 133],
  ['rt_sigtimedwait', 128, 137], ['rt_tgsigqueueinfo', 297, 240], ['sched_getaffinity', 204, 123], ['sched_getattr', 315, 275],
  ['sched_getparam', 143, 121], ['sched_get_priority_max', 146, 125], ['sched_get_priority_min', 147, 126], ['sched_getscheduler', 145, 120],
  ['sched_rr_get_interval', 148, 127], ['sched_setaffinity', 203, 122], ['sched_setattr', 314, 274], ['sched_setparam', 142, 118],
  ['sched_setscheduler', 144, 119], ['sched_yield', 24, 124], ['seccomp', 317, 277], ['select', 23, null], ['sendfile', 40, 71],
  ['sendmmsg', 307, 269], ['sendmsg', 46, 211], ['sendto', 44, 206], ['setfsgid', 123, 152], ['setfsuid', 122, 151], ['setgid', 106, 144],
  ['setgroups', 116, 159], ['setitimer', 38, 103], ['setpgid', 109, 154], ['setpriority', 141, 140], ['setregid', 114, 143], ['setresgid', 119, 149],
  ['setresuid', 117, 147], ['setreuid', 113, 145], ['setrlimit', 160, 164], ['set_robust_list', 273, 99], ['setsid', 112, 157],
  ['setsockopt', 54, 208], ['set_tid_address', 218, 96], ['setuid', 105, 146], ['setxattr', 188, 5], ['shutdown', 48, 210],
  ['sigaltstack', 131, 132], ['signalfd', 282, null], ['signalfd4', 289, 74], ['socketpair', 53, 199], ['splice', 275, 76], ['stat', 4, null],
  ['statfs', 137, 43], ['statx', 332, 291], ['symlink', 88, null], ['symlinkat', 266, 36], ['sync', 162, 81], ['sync_file_range', 277, 84],
  ['syncfs', 306, 267], ['sysinfo', 99, 179], ['tee', 276, 77], ['tgkill', 234, 131], ['time', 201, null], ['timer_create', 222, 107],
  ['timer_delete', 226, 111], ['timer_getoverrun', 225, 109], ['timer_gettime', 224, 108], ['timer_settime', 223, 110], ['timerfd_create', 283, 85],
  ['timerfd_gettime', 287, 87], ['timerfd_settime', 286, 86], ['times', 100, 153], ['tkill', 200, 130], ['truncate', 76, 45], ['umask', 95, 166],
  ['uname', 63, 160], ['unlink', 87, null], ['unlinkat', 263, 35], ['utime', 132, null], ['utimensat', 280, 88], ['utimes', 235, null],
  ['vfork', 58, null], ['vmsplice', 278, 75], ['wait4', 61, 260], ['waitid', 247, 95], ['write', 1, 64], ['writev', 20, 66],
];
/** Calls decided by their arguments or answered ENOSYS: [x86_64, aarch64]. */
export const CLONE: readonly [number, number] = [56, 220];
export const CLONE3 = 435;
export const SOCKET: readonly [number, number] = [41, 198];
/** The newest call number this table knows (file_setattr, Linux 6.17); past it: ENOSYS. */
export const NEWEST_KNOWN = 469;

export const ALLOWED_SYSCALLS: readonly string[] = ALLOWED.map((a) => a[0]);

type Insn = [code: number, jt: number, jf: number, k: number];

const ret = (k: number): Insn => [RET_K, 0, 0, k];

/** Allowed numbers as sorted [first, last] runs (consecutive numbers share one test). */
function runs(nrs: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const n of [...new Set(nrs)].sort((a, b) => a - b)) {
    const last = out.at(-1);
    if (last !== undefined && last[1] === n - 1) last[1] = n;
    else out.push([n, n]);
  }
  return out;
}

function archBlock(which: 0 | 1): Insn[] {
  const out: Insn[] = [[LD_W_ABS, 0, 0, NR]];
  if (which === 0) out.push([JGE_K, 0, 1, X32_SYSCALL_BIT], ret(RET_KILL_PROCESS));
  // clone: refuse namespace flags.
  out.push([JEQ_K, 0, 4, CLONE[which]], [LD_W_ABS, 0, 0, ARG0_LOW], [JSET_K, 0, 1, CLONE_NAMESPACES], ret(RET_ERRNO | EPERM), ret(RET_ALLOW));
  out.push([JEQ_K, 0, 1, CLONE3], ret(RET_ERRNO | ENOSYS));
  // socket: the address family.
  const fams = SOCKET_FAMILIES.length;
  out.push([JEQ_K, 0, fams + 3, SOCKET[which]], [LD_W_ABS, 0, 0, ARG0_LOW]);
  SOCKET_FAMILIES.forEach((f, i) => out.push([JEQ_K, fams - i - 1, i === fams - 1 ? 1 : 0, f]));
  out.push(ret(RET_ALLOW), ret(RET_ERRNO | EPERM));
  // The allowed runs, in chunks that each end in their own ALLOW (jump offsets are 8 bits).
  const all = runs(ALLOWED.map((a) => a[1 + which]).filter((n): n is number => n !== null));
  for (let c = 0; c < all.length; c += 50) {
    const chunk: { insn: Insn; toAllow: 'jt' | 'jf' | null }[] = [];
    for (const [a, b] of all.slice(c, c + 50)) {
      if (a === b) chunk.push({ insn: [JEQ_K, 0, 0, a], toAllow: 'jt' });
      else chunk.push({ insn: [JGE_K, 0, 1, a], toAllow: null }, { insn: [JGT_K, 0, 0, b], toAllow: 'jf' });
    }
    chunk.forEach(({ insn, toAllow }, i) => {
      if (toAllow === 'jt') insn[1] = chunk.length - i; // past the JA that skips the ALLOW
      if (toAllow === 'jf') insn[2] = chunk.length - i;
      out.push(insn);
    });
    out.push([JA, 0, 0, 1], ret(RET_ALLOW));
  }
  out.push([JGT_K, 0, 1, NEWEST_KNOWN], ret(RET_ERRNO | ENOSYS), ret(RET_ERRNO | EPERM));
  return out;
}

/** The compiled program, as bubblewrap reads it from its `--seccomp` fd (host byte order). */
export function seccompProgram(): Buffer {
  const x86 = archBlock(0);
  const arm = archBlock(1);
  const prog: Insn[] = [
    [LD_W_ABS, 0, 0, ARCH],
    [JEQ_K, 1, 0, AUDIT_ARCH_X86_64],
    [JA, 0, 0, x86.length],
    ...x86,
    [JEQ_K, 1, 0, AUDIT_ARCH_AARCH64],
    [JA, 0, 0, arm.length],
    ...arm,
    ret(RET_KILL_PROCESS),
  ];
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, jt, jf, k], i) => {
    if (jt > 255 || jf > 255) throw new Error('seccomp program: jump too far'); // programmer error: chunks keep offsets small
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return buf;
}
