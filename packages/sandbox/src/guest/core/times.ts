import fs from 'node:fs';
import { Errno, WasiError } from './errno.js';

/** A new access or modification time: leave it, the current time, or nanoseconds since the epoch. */
export type NewTime = { kind: 'keep' } | { kind: 'now' } | { kind: 'set'; ns: bigint };

/**
 * Node's utimes family takes seconds as a double (libuv's uv_fs_utime), which cannot carry
 * nanoseconds at today's epoch (2^-22 s resolution). So the host is set to the nearest value it
 * takes, and the exact nanoseconds the guest asked for are remembered per inode and reported for as
 * long as the host still holds the value this process set (any later change on the host wins).
 */
const exact = new Map<string, { hostM: bigint; guestM: bigint; hostA: bigint; guestA: bigint }>();

export type Target = { fd: number } | { path: string; follow: boolean };

function stat(t: Target): fs.BigIntStats {
  if ('fd' in t) return fs.fstatSync(t.fd, { bigint: true });
  return t.follow ? fs.statSync(t.path, { bigint: true }) : fs.lstatSync(t.path, { bigint: true });
}

export function setTimes(t: Target, atime: NewTime, mtime: NewTime): void {
  const before = stat(t);
  const now = BigInt(Date.now()) * 1_000_000n;
  const pick = (n: NewTime, old: bigint) => (n.kind === 'keep' ? old : n.kind === 'now' ? now : n.ns);
  const a = pick(atime, reported(before).atimeNs);
  const m = pick(mtime, reported(before).mtimeNs);
  const secs = (ns: bigint) => Number(ns) / 1e9;
  if ('fd' in t) fs.futimesSync(t.fd, secs(a), secs(m));
  else if (t.follow) fs.utimesSync(t.path, secs(a), secs(m));
  else fs.lutimesSync(t.path, secs(a), secs(m));
  const after = stat(t);
  exact.set(`${after.dev}:${after.ino}`, { hostM: after.mtimeNs, guestM: m, hostA: after.atimeNs, guestA: a });
}

/** The times to report for `st`: the guest's exact values where the host still holds ours. */
export function reported(st: fs.BigIntStats): { atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint } {
  const e = exact.get(`${st.dev}:${st.ino}`);
  return {
    atimeNs: e !== undefined && e.hostA === st.atimeNs ? e.guestA : st.atimeNs,
    mtimeNs: e !== undefined && e.hostM === st.mtimeNs ? e.guestM : st.mtimeNs,
    ctimeNs: st.ctimeNs,
  };
}

/** preview1 fstflags: ATIM 1, ATIM_NOW 2, MTIM 4, MTIM_NOW 8; setting a time and "now" at once is EINVAL. */
export function fromFstflags(flags: number, atim: bigint, mtim: bigint): [NewTime, NewTime] {
  if ((flags & 3) === 3 || (flags & 12) === 12 || (flags & ~15) !== 0) throw new WasiError(Errno.INVAL);
  const one = (set: number, now: number, ns: bigint): NewTime => ((flags & now) !== 0 ? { kind: 'now' } : (flags & set) !== 0 ? { kind: 'set', ns } : { kind: 'keep' });
  return [one(1, 2, atim), one(4, 8, mtim)];
}
