import { Errno, WasiError } from '../core/errno.js';
import { VIRTUAL_DIR } from '../core/stat.js';
import { fromFstflags } from '../core/times.js';
import { FDFLAG, FILETYPE, filetypeOf, safe, sys, type Entry, type Preview1Context, type Syscall } from './context.js';
import { DIR_INHERITING, DIR_RIGHTS, fileRights, RIGHTS_ALL } from './rights.js';

/** fd_*: reads, writes, seeks and metadata on open descriptors. */
export function fdImports(ctx: Preview1Context): Record<string, Syscall> {
  const { mem } = ctx;
  const close = (e: Entry) => {
    if (e.type === 'file') e.file.close();
    else if (e.type === 'dir') e.dir.close();
  };
  const stdout = (n: 1 | 2, bufs: Uint8Array[]) => {
    let total = 0;
    for (const b of bufs) {
      (n === 1 ? ctx.io.stdout : ctx.io.stderr)(b);
      total += b.length;
    }
    return total;
  };
  return {
    fd_write: sys((fd: number, iovs: number, n: number, out: number) => {
      const e = ctx.entry(fd);
      if (e.type === 'file') {
        const one = mem.single(iovs, n);
        if (one !== null) {
          // One non-empty iovec (most writes; wasi-libc's stdio adds an empty one): straight from
          // memory, nothing allocated per call.
          const written = e.file.writeFrom(mem.all, one.ptr, one.len, e.pos);
          e.pos = e.file.append ? e.file.size : e.pos + written;
          mem.view.setUint32(out, written, true);
          return;
        }
      }
      const bufs = mem.iovecs(iovs, n);
      let written: number;
      if (e.type === 'stdio') {
        if (e.n === 0) throw new WasiError(Errno.BADF);
        written = stdout(e.n, bufs);
      } else if (e.type === 'file') {
        written = e.file.write(bufs, e.pos);
        e.pos = e.file.append ? e.file.size : e.pos + written;
      } else throw new WasiError(Errno.ISDIR);
      mem.view.setUint32(out, written, true);
    }),
    fd_pwrite: sys((fd: number, iovs: number, n: number, offset: bigint, out: number) => {
      const e = ctx.file(fd);
      mem.view.setUint32(out, e.file.write(mem.iovecs(iovs, n), safe(offset)), true);
    }),
    fd_read: sys((fd: number, iovs: number, n: number, out: number) => {
      const e = ctx.entry(fd);
      const bufs = mem.iovecs(iovs, n);
      let got = 0;
      if (e.type === 'stdio') {
        if (e.n !== 0) throw new WasiError(Errno.BADF);
        if (ctx.io.stdin !== null)
          for (const b of bufs) {
            const r = ctx.io.stdin(b);
            got += r;
            if (r < b.length) break;
          }
      } else if (e.type === 'file') {
        got = e.file.read(bufs, e.pos);
        e.pos += got;
      } else throw new WasiError(Errno.ISDIR);
      mem.view.setUint32(out, got, true);
    }),
    fd_pread: sys((fd: number, iovs: number, n: number, offset: bigint, out: number) => {
      const e = ctx.file(fd);
      mem.view.setUint32(out, e.file.read(mem.iovecs(iovs, n), safe(offset)), true);
    }),
    fd_seek: sys((fd: number, offset: bigint, whence: number, out: number) => {
      const e = ctx.file(fd);
      if (whence > 2) throw new WasiError(Errno.INVAL);
      const base = whence === 0 ? 0n : whence === 1 ? BigInt(e.pos) : BigInt(e.file.size);
      const next = base + offset;
      if (next < 0n) throw new WasiError(Errno.INVAL);
      e.pos = safe(next);
      mem.view.setBigUint64(out, next, true);
    }),
    fd_tell: sys((fd: number, out: number) => mem.view.setBigUint64(out, BigInt(ctx.file(fd).pos), true)),
    fd_close: sys((fd: number) => {
      close(ctx.entry(fd));
      ctx.fds.delete(fd);
    }),
    fd_sync: sys((fd: number) => {
      const e = ctx.entry(fd);
      if (e.type === 'file') e.file.sync(false);
      else if (e.type === 'dir' && e.dir.kind === 'dir') e.dir.sync();
    }),
    fd_datasync: sys((fd: number) => {
      const e = ctx.entry(fd);
      if (e.type === 'file') e.file.sync(true);
    }),
    fd_advise: sys((fd: number, _offset: bigint, _len: bigint, advice: number) => {
      const e = ctx.entry(fd);
      if (e.type !== 'file') throw new WasiError(e.type === 'dir' ? Errno.BADF : Errno.SPIPE);
      if (advice > 5) throw new WasiError(Errno.INVAL);
    }),
    fd_allocate: sys((fd: number, offset: bigint, len: bigint) => {
      const e = ctx.entry(fd);
      if (e.type !== 'file') throw new WasiError(e.type === 'dir' ? Errno.ISDIR : Errno.BADF);
      e.file.allocate(safe(offset), safe(len));
    }),
    fd_fdstat_get: sys((fd: number, ptr: number) => {
      const e = ctx.entry(fd);
      const v = mem.view;
      const type = e.type === 'stdio' ? FILETYPE.char : e.type === 'dir' ? FILETYPE.dir : filetypeOf(e.file.stat().type);
      v.setUint8(ptr, type);
      v.setUint16(ptr + 2, e.type === 'file' ? e.fdflags : 0, true);
      v.setBigUint64(ptr + 8, e.type === 'stdio' ? RIGHTS_ALL : e.type === 'dir' ? DIR_RIGHTS : fileRights(e.file.readable, e.file.writable), true);
      v.setBigUint64(ptr + 16, e.type === 'dir' ? DIR_INHERITING : 0n, true);
    }),
    fd_fdstat_set_flags: sys((fd: number, flags: number) => {
      const e = ctx.entry(fd);
      if (e.type !== 'file') return;
      e.file.setAppend((flags & FDFLAG.append) !== 0);
      e.fdflags = (e.fdflags & ~(FDFLAG.append | FDFLAG.nonblock)) | (flags & (FDFLAG.append | FDFLAG.nonblock));
    }),
    // As wasmtime: rights are not narrowed per descriptor (a guest probing this sees ENOTSUP).
    fd_fdstat_set_rights: sys((fd: number) => {
      ctx.entry(fd);
      throw new WasiError(Errno.NOTSUP);
    }),
    fd_filestat_get: sys((fd: number, ptr: number) => {
      const e = ctx.entry(fd);
      if (e.type === 'stdio') return ctx.writeStat(ptr, { ...VIRTUAL_DIR, type: 'char' });
      ctx.writeStat(ptr, e.type === 'file' ? e.file.stat() : e.dir.statSelf());
    }),
    fd_filestat_set_size: sys((fd: number, size: bigint) => {
      const e = ctx.entry(fd);
      if (e.type !== 'file') throw new WasiError(e.type === 'dir' ? Errno.ISDIR : Errno.BADF);
      e.file.setSize(safe(size));
    }),
    fd_filestat_set_times: sys((fd: number, atim: bigint, mtim: bigint, flags: number) => {
      const e = ctx.entry(fd);
      const [a, m] = fromFstflags(flags, atim, mtim);
      if (e.type === 'file') e.file.setTimes(a, m);
      else if (e.type === 'dir' && e.dir.kind === 'dir') e.dir.setTimesSelf(a, m);
      else throw new WasiError(e.type === 'dir' ? Errno.ROFS : Errno.BADF);
    }),
    fd_prestat_get: sys((fd: number, ptr: number) => {
      const e = ctx.entry(fd);
      if (e.type !== 'dir' || e.preopen === null) throw new WasiError(Errno.BADF);
      mem.view.setUint32(ptr, 0, true);
      mem.view.setUint32(ptr + 4, Buffer.byteLength(e.preopen), true);
    }),
    fd_prestat_dir_name: sys((fd: number, ptr: number, len: number) => {
      const e = ctx.entry(fd);
      if (e.type !== 'dir' || e.preopen === null) throw new WasiError(Errno.BADF);
      const name = Buffer.from(e.preopen);
      if (len < name.length) throw new WasiError(Errno.NAMETOOLONG);
      mem.bytes(ptr, name.length).set(name);
    }),
    fd_readdir: sys((fd: number, buf: number, len: number, cookie: bigint, out: number) => {
      const d = ctx.dir(fd);
      // Listed afresh from the start (cookie 0); later cookies continue that listing.
      if (cookie === 0n || d.listing === null) d.listing = d.dir.list().map((x) => ({ name: x.name, type: filetypeOf(x.type), ino: x.ino }));
      let used = 0;
      for (let i = Number(cookie); i < d.listing.length && used < len; i++) {
        const n = d.listing[i] as { name: string; type: number; ino: bigint };
        const name = Buffer.from(n.name);
        const rec = Buffer.alloc(24 + name.length);
        rec.writeBigUInt64LE(BigInt(i + 1), 0);
        rec.writeBigUInt64LE(n.ino, 8);
        rec.writeUInt32LE(name.length, 16);
        rec.writeUInt8(n.type, 20);
        name.copy(rec, 24);
        const take = Math.min(rec.length, len - used);
        mem.bytes(buf + used, take).set(rec.subarray(0, take));
        used += take;
      }
      mem.view.setUint32(out, used, true);
    }),
    fd_renumber: sys((from: number, to: number) => {
      const e = ctx.entry(from);
      const old = ctx.entry(to);
      if (from === to) return;
      close(old);
      ctx.fds.set(to, e);
      ctx.fds.delete(from);
    }),
  };
}
