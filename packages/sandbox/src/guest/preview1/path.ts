import { Errno, WasiError } from '../core/errno.js';
import { fromFstflags } from '../core/times.js';
import { FDFLAG, sys, type Preview1Context, type Syscall } from './context.js';
import { RIGHTS } from './rights.js';

const LOOKUP_SYMLINK_FOLLOW = 1;
const OFLAG = { creat: 1, directory: 2, excl: 4, trunc: 8 } as const;

/** path_*: everything named by a path below a directory descriptor, through the core's walk. */
export function pathImports(ctx: Preview1Context): Record<string, Syscall> {
  const dir = (fd: number) => ctx.dir(fd).dir;
  const host = (fd: number) => {
    const d = dir(fd);
    if (d.kind !== 'dir') throw new WasiError(Errno.ROFS);
    return d;
  };
  return {
    path_open: sys((dirfd: number, dirflags: number, p: number, plen: number, oflags: number, rightsBase: bigint, _inheriting: bigint, fdflags: number, out: number) => {
      const d = dir(dirfd);
      const append = (fdflags & FDFLAG.append) !== 0;
      const write = (rightsBase & RIGHTS.FD_WRITE) !== 0n || append;
      const read = (rightsBase & (RIGHTS.FD_READ | RIGHTS.FD_READDIR)) !== 0n;
      const opened = d.open(ctx.path(p, plen), {
        follow: (dirflags & LOOKUP_SYMLINK_FOLLOW) !== 0,
        create: (oflags & OFLAG.creat) !== 0,
        exclusive: (oflags & OFLAG.excl) !== 0,
        truncate: (oflags & OFLAG.trunc) !== 0,
        directory: (oflags & OFLAG.directory) !== 0,
        read,
        write,
        append,
        sync: (fdflags & FDFLAG.sync) !== 0 ? 'full' : (fdflags & (FDFLAG.dsync | FDFLAG.rsync)) !== 0 ? 'data' : 'none',
      });
      const fd = opened.kind === 'file' ? ctx.add({ type: 'file', file: opened, pos: 0, fdflags: fdflags & (FDFLAG.append | FDFLAG.dsync | FDFLAG.nonblock | FDFLAG.rsync | FDFLAG.sync) }) : ctx.add({ type: 'dir', dir: opened, preopen: null, listing: null });
      ctx.mem.view.setUint32(out, fd, true);
    }),
    path_filestat_get: sys((fd: number, flags: number, p: number, len: number, ptr: number) => {
      const d = dir(fd);
      const rel = ctx.path(p, len);
      ctx.writeStat(ptr, d.kind === 'dir' ? d.stat(rel, (flags & LOOKUP_SYMLINK_FOLLOW) !== 0) : d.stat(rel));
    }),
    path_filestat_set_times: sys((fd: number, flags: number, p: number, len: number, atim: bigint, mtim: bigint, fst: number) => {
      const [a, m] = fromFstflags(fst, atim, mtim);
      host(fd).setTimes(ctx.path(p, len), (flags & LOOKUP_SYMLINK_FOLLOW) !== 0, a, m);
    }),
    path_create_directory: sys((fd: number, p: number, len: number) => host(fd).mkdir(ctx.path(p, len))),
    path_remove_directory: sys((fd: number, p: number, len: number) => host(fd).rmdir(ctx.path(p, len))),
    path_unlink_file: sys((fd: number, p: number, len: number) => host(fd).unlink(ctx.path(p, len))),
    path_rename: sys((fd: number, op: number, olen: number, nfd: number, np: number, nlen: number) => host(fd).rename(ctx.path(op, olen), dir(nfd), ctx.path(np, nlen))),
    path_symlink: sys((op: number, olen: number, fd: number, np: number, nlen: number) => host(fd).symlink(ctx.path(op, olen), ctx.path(np, nlen))),
    path_link: sys((ofd: number, flags: number, op: number, olen: number, nfd: number, np: number, nlen: number) =>
      host(ofd).link(ctx.path(op, olen), (flags & LOOKUP_SYMLINK_FOLLOW) !== 0, dir(nfd), ctx.path(np, nlen)),
    ),
    path_readlink: sys((fd: number, p: number, len: number, buf: number, blen: number, out: number) => {
      const target = dir(fd).readlink(ctx.path(p, len));
      const n = Math.min(blen, target.length);
      ctx.mem.bytes(buf, n).set(target.subarray(0, n));
      ctx.mem.view.setUint32(out, n, true);
    }),
  };
}
