import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ALLOWED, AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64, CLONE, CLONE3, CLONE_NAMESPACES, NEWEST_KNOWN, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, SOCKET, seccompProgram, X32_SYSCALL_BIT } from './seccomp.js';

/**
 * The generated program, run by a classic-BPF interpreter (the subset seccomp accepts) for every
 * listed call on both architectures, the refused ones, the architecture and x32 kills, and the
 * argument checks of clone and socket. The numbers are checked against the kernel headers where
 * this machine has them (linux-libc-dev), so a wrong number in the table cannot pass.
 */
function run(prog: Buffer, data: { nr: number; arch: number; args?: bigint[] }): number {
  const mem = Buffer.alloc(64);
  mem.writeInt32LE(data.nr | 0, 0);
  mem.writeUInt32LE(data.arch >>> 0, 4);
  (data.args ?? []).forEach((a, i) => mem.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + i * 8));
  let acc = 0;
  for (let pc = 0, steps = 0; steps < 4096; steps++) {
    if (pc * 8 >= prog.length) throw new Error(`fell off the program at ${pc}`);
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case 0x20: // LD W ABS
        if (k % 4 !== 0 || k >= 64) throw new Error(`load at ${k}`);
        acc = mem.readUInt32LE(k);
        break;
      case 0x05: // JA
        pc += k;
        break;
      case 0x15: // JEQ K
        pc += acc === k ? jt : jf;
        break;
      case 0x25: // JGT K
        pc += acc > k ? jt : jf;
        break;
      case 0x35: // JGE K
        pc += acc >= k ? jt : jf;
        break;
      case 0x45: // JSET K
        pc += (acc & k) !== 0 ? jt : jf;
        break;
      case 0x06: // RET K
        return k;
      default:
        throw new Error(`instruction 0x${code.toString(16)} the interpreter (and this filter) does not use`);
    }
  }
  throw new Error('no verdict in 4096 steps');
}

const EPERM = RET_ERRNO | 1;
const ENOSYS = RET_ERRNO | 38;
const prog = seccompProgram();
const ARCHES = [
  { name: 'x86_64', arch: AUDIT_ARCH_X86_64, col: 1 as const, header: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h' },
  { name: 'aarch64', arch: AUDIT_ARCH_AARCH64, col: 2 as const, header: '/usr/include/asm-generic/unistd.h' },
];

/** `__NR_name number` of a header (asm-generic writes some as `__NR3264_name`). */
function header(file: string): Map<string, number> | null {
  let src: string;
  try {
    src = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const out = new Map<string, number>();
  const n3264 = new Map([...src.matchAll(/#define __NR3264_(\w+) (\d+)/g)].map((m) => [m[1] as string, Number(m[2])]));
  for (const m of src.matchAll(/#define __NR_(\w+) (\d+)/g)) out.set(m[1] as string, Number(m[2]));
  for (const m of src.matchAll(/#define __NR_(\w+) __NR3264_(\w+)/g)) if (n3264.has(m[2] as string)) out.set(m[1] as string, n3264.get(m[2] as string) as number);
  // Not calls: the table's size, and the start of aarch64's own block.
  out.delete('syscalls');
  out.delete('arch_specific_syscall');
  return out;
}

/** Calls the review found allowed, by their numbers on both architectures (null: none there). */
const REFUSED: [string, number | null, number | null][] = [
  ['modify_ldt', 154, null],
  ['personality', 135, 92],
  ['ptrace', 101, 117],
  ['mount', 165, 40],
  ['unshare', 272, 97],
  ['setns', 308, 268],
  ['bpf', 321, 280],
  ['userfaultfd', 323, 282],
  ['perf_event_open', 298, 241],
  ['keyctl', 250, 219],
  ['mbind', 237, 235],
  ['migrate_pages', 256, 238],
  ['move_pages', 279, 239],
  ['fanotify_init', 300, 262],
  ['io_setup', 206, 0],
  ['mknodat', 259, 33],
  ['shmget', 29, 194],
  ['open_tree', 428, 428],
  ['io_uring_setup', 425, 425],
  ['pidfd_getfd', 438, 438],
  ['process_madvise', 440, 440],
  ['statmount', 457, 457],
  ['listmount', 458, 458],
  ['open_tree_attr', 467, 467],
  ['file_setattr', 469, 469],
];

describe('the seccomp allow-list, interpreted', () => {
  for (const a of ARCHES) {
    it(`${a.name}: every listed call is allowed, and its number is the kernel's`, ({ skip }) => {
      let checked = 0;
      for (const entry of ALLOWED) {
        const nr = entry[a.col];
        if (nr === null) continue;
        expect(run(prog, { nr, arch: a.arch }), entry[0]).toBe(RET_ALLOW);
        checked++;
      }
      expect(checked).toBeGreaterThan(150);
      const h = header(a.header);
      if (h === null) return skip(`${a.header} is missing (linux-libc-dev): the numbers were not checked against the kernel's`);
      for (const entry of ALLOWED) {
        const known = h.get(entry[0]);
        // Calls newer than the installed headers are checked against the table's own number only.
        if (known !== undefined) expect(entry[a.col], entry[0]).toBe(known);
        else if (entry[a.col] !== null) expect(entry[a.col], entry[0]).toBeGreaterThan(Math.max(...h.values()));
      }
      // Every call the headers know and the list does not name is refused (EPERM), or decided by its arguments.
      const listed = new Set(ALLOWED.map((e) => e[0]));
      // (Another name for a listed number, e.g. arm's sync_file_range2 in asm-generic, is that call.)
      const listedNrs = new Set(ALLOWED.map((e) => e[a.col]));
      for (const [name, nr] of h) {
        if (listed.has(name) || listedNrs.has(nr) || ['clone', 'clone3', 'socket'].includes(name) || nr > NEWEST_KNOWN) continue;
        expect(run(prog, { nr, arch: a.arch }), name).toBe(EPERM);
      }
    });

    it(`${a.name}: the calls the review found open are refused with EPERM; numbers past the table's newest get ENOSYS`, () => {
      for (const r of REFUSED) {
        const nr = r[a.col];
        if (nr !== null) expect(run(prog, { nr, arch: a.arch }), r[0]).toBe(EPERM);
      }
      expect(run(prog, { nr: NEWEST_KNOWN + 1, arch: a.arch })).toBe(ENOSYS);
      expect(run(prog, { nr: 1000, arch: a.arch })).toBe(ENOSYS);
    });

    it(`${a.name}: clone without namespace flags is allowed, with any of them refused; clone3 is ENOSYS`, () => {
      const clone = CLONE[a.col - 1] as number;
      // fork (SIGCHLD) and a thread (VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID)
      for (const flags of [0x11n, 0x3d0f00n]) expect(run(prog, { nr: clone, arch: a.arch, args: [flags] })).toBe(RET_ALLOW);
      for (let bit = 0; bit < 32; bit++) {
        if ((CLONE_NAMESPACES & (1 << bit)) === 0) continue;
        expect(run(prog, { nr: clone, arch: a.arch, args: [0x11n | BigInt(1 << bit)] }), `flag 0x${(1 << bit).toString(16)}`).toBe(EPERM);
      }
      expect(CLONE_NAMESPACES.toString(16)).toBe('7e020000');
      expect(run(prog, { nr: CLONE3, arch: a.arch })).toBe(ENOSYS);
    });

    it(`${a.name}: socket only for AF_INET and AF_INET6 (no AF_UNIX, netlink, packet or vsock)`, () => {
      const socket = SOCKET[a.col - 1] as number;
      expect(run(prog, { nr: socket, arch: a.arch, args: [2n, 1n] })).toBe(RET_ALLOW);
      expect(run(prog, { nr: socket, arch: a.arch, args: [10n, 2n] })).toBe(RET_ALLOW);
      // The kernel reads the family as an int: upper bits do not change it.
      expect(run(prog, { nr: socket, arch: a.arch, args: [(1n << 40n) | 2n] })).toBe(RET_ALLOW);
      for (const [family, name] of [
        [1, 'AF_UNIX'],
        [16, 'AF_NETLINK'],
        [17, 'AF_PACKET'],
        [40, 'AF_VSOCK'],
        [0, 'AF_UNSPEC'],
        [3, 'AF_AX25'],
      ] as const) {
        expect(run(prog, { nr: socket, arch: a.arch, args: [BigInt(family), 1n] }), name).toBe(EPERM);
      }
    });
  }

  it('a foreign architecture (i386, arm, riscv64) and x32 numbers kill the process', () => {
    for (const arch of [0x40000003, 0x40000028, 0xc00000f3, 0]) expect(run(prog, { nr: 0, arch })).toBe(RET_KILL_PROCESS);
    // x32: read(2) and every other number with the x32 bit
    for (const nr of [0, 1, 39, 512]) expect(run(prog, { nr: nr | X32_SYSCALL_BIT, arch: AUDIT_ARCH_X86_64 })).toBe(RET_KILL_PROCESS);
  });

  it('the program fits the kernel limit (4096 instructions) and has no jump past its end', () => {
    expect(prog.length % 8).toBe(0);
    expect(prog.length / 8).toBeLessThan(4096);
  });
});
