import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Errno, errnoOf, WasiError } from '../core/errno.js';
import { DiskQuota, resolvePath, type Mount, type Resolved } from '../core/fs.js';
import { GuestMemory } from './memory.js';

/**
 * A WASI preview1 (`wasi_snapshot_preview1`) host over the sandbox's enforcement core. Written here
 * rather than wrapping the module with jco's preview1 adapter: the adapter traps on modules that
 * do not export `cabi_realloc` (Debian clang's output) and collapses exit codes to 0/1.
 */

export class GuestExit extends Error {
  constructor(readonly code: number) {
    super(`guest exited with ${code}`);
  }
}

export interface Preview1Options {
  args: string[];
  env: Record<string, string>;
  mounts: Mount[];
  quota: DiskQuota | null;
  stdout: (b: Uint8Array) => void;
  stderr: (b: Uint8Array) => void;
  /** Read from the host's stdin, or null when stdin is not granted. */
  stdin: ((b: Uint8Array) => number) | null;
}

type Entry =
  | { type: 'stdio'; n: 0 | 1 | 2 }
  | { type: 'dir'; mount: Mount; parts: string[]; preopen: string | null }
    /** `size` is tracked here so a write needs no fstat: only this guest writes its files. */
  | { type: 'file'; fd: number; mount: Mount; read: boolean; write: boolean; append: boolean; pos: number; size: number; hostPath: string };

const FILETYPE = { unknown: 0, char: 2, dir: 3, file: 4, symlink: 7 } as const;
const RIGHTS_ALL = 0x1fffffffn;
const RIGHT_FD_READ = 1n << 1n;
const RIGHT_FD_WRITE = 1n << 6n;
const OFLAG = { creat: 1, directory: 2, excl: 4, trunc: 8 } as const;
const FDFLAG_APPEND = 1;

export function preview1Imports(opts: Preview1Options): { imports: Record<string, WebAssembly.ImportValue>; memory: GuestMemory } {
  const mem = new GuestMemory();
  const fds = new Map<number, Entry>([
    [0, { type: 'stdio', n: 0 }],
    [1, { type: 'stdio', n: 1 }],
    [2, { type: 'stdio', n: 2 }],
  ]);
  opts.mounts.forEach((m, i) => fds.set(3 + i, { type: 'dir', mount: m, parts: [], preopen: m.guest }));
  let nextFd = 3 + opts.mounts.length;
  const args = opts.args.map((a) => Buffer.from(`${a}\0`));
  const env = Object.entries(opts.env).map(([k, v]) => Buffer.from(`${k}=${v}\0`));

  const entry = (fd: number): Entry => {
    const e = fds.get(fd);
    if (e === undefined) throw new WasiError(Errno.BADF);
    return e;
  };
  const dirEntry = (fd: number): Extract<Entry, { type: 'dir' }> => {
    const e = entry(fd);
    if (e.type !== 'dir') throw new WasiError(Errno.NOTDIR);
    return e;
  };
  const resolve = (fd: number, p: number, len: number) => {
    const d = dirEntry(fd);
    return resolvePath(d.mount, d.parts, mem.string(p, len));
  };
  const writableHost = (r: Resolved): string => {
    if (r.kind !== 'host' || r.mount.readonly) throw new WasiError(Errno.ROFS);
    return r.path;
  };
  /** Wrap a syscall so any failure becomes an errno for the guest, never an exception in the host. */
  const sys =
    <A extends unknown[]>(f: (...a: A) => number | void) =>
    (...a: A): number => {
      try {
        return f(...a) ?? Errno.SUCCESS;
      } catch (err) {
        if (err instanceof GuestExit) throw err;
        return errnoOf(err);
      }
    };
  const listSizes = (list: Buffer[], countPtr: number, sizePtr: number) => {
    mem.view.setUint32(countPtr, list.length, true);
    mem.view.setUint32(sizePtr, list.reduce((s, b) => s + b.length, 0), true);
  };
  const listGet = (list: Buffer[], ptrs: number, buf: number) => {
    let off = buf;
    list.forEach((b, i) => {
      mem.view.setUint32(ptrs + i * 4, off, true);
      mem.bytes(off, b.length).set(b);
      off += b.length;
    });
  };
  const writeFilestat = (ptr: number, st: fs.Stats | null, type: number) => {
    const v = mem.view;
    for (let i = 0; i < 64; i += 8) v.setBigUint64(ptr + i, 0n, true);
    v.setBigUint64(ptr, BigInt(st?.dev ?? 0), true);
    v.setBigUint64(ptr + 8, BigInt(st?.ino ?? 0), true);
    v.setUint8(ptr + 16, type);
    v.setBigUint64(ptr + 24, BigInt(st?.nlink ?? 1), true);
    v.setBigUint64(ptr + 32, BigInt(st?.size ?? 0), true);
    const ns = (ms: number | undefined) => BigInt(Math.round((ms ?? 0) * 1e6));
    v.setBigUint64(ptr + 40, ns(st?.atimeMs), true);
    v.setBigUint64(ptr + 48, ns(st?.mtimeMs), true);
    v.setBigUint64(ptr + 56, ns(st?.ctimeMs), true);
  };
  const typeOf = (st: fs.Stats) => (st.isDirectory() ? FILETYPE.dir : st.isFile() ? FILETYPE.file : st.isSymbolicLink() ? FILETYPE.symlink : FILETYPE.unknown);

  const writeOut = (n: 1 | 2, bufs: Uint8Array[]): number => {
    let total = 0;
    for (const b of bufs) {
      (n === 1 ? opts.stdout : opts.stderr)(b);
      total += b.length;
    }
    return total;
  };
  /** Writes to a file at `pos`, charging the quota for growth before any byte lands. */
  const writeFile = (e: Extract<Entry, { type: 'file' }>, bufs: Uint8Array[], at: number): number => {
    if (!e.write) throw new WasiError(Errno.BADF);
    const len = bufs.reduce((s, b) => s + b.length, 0);
    const start = e.append ? e.size : at;
    opts.quota?.charge(Math.max(0, start + len - e.size));
    let off = start;
    for (const b of bufs) off += fs.writeSync(e.fd, b, 0, b.length, off);
    e.size = Math.max(e.size, off);
    return off - start;
  };
  const readFile = (e: Extract<Entry, { type: 'file' }>, bufs: Uint8Array[], at: number): number => {
    if (!e.read) throw new WasiError(Errno.BADF);
    let total = 0;
    for (const b of bufs) {
      const n = fs.readSync(e.fd, b, 0, b.length, at + total);
      total += n;
      if (n < b.length) break;
    }
    return total;
  };

  const wasi: Record<string, (...a: never[]) => number | void> = {
    args_sizes_get: sys((c: number, s: number) => listSizes(args, c, s)),
    args_get: sys((p: number, b: number) => listGet(args, p, b)),
    environ_sizes_get: sys((c: number, s: number) => listSizes(env, c, s)),
    environ_get: sys((p: number, b: number) => listGet(env, p, b)),
    clock_res_get: sys((_id: number, ptr: number) => mem.view.setBigUint64(ptr, 1000n, true)),
    clock_time_get: sys((id: number, _precision: bigint, ptr: number) => {
      const t = id === 0 ? BigInt(Date.now()) * 1_000_000n : id === 1 ? process.hrtime.bigint() : BigInt(Math.round(process.cpuUsage().user * 1000));
      mem.view.setBigUint64(ptr, t, true);
    }),
    random_get: sys((ptr: number, len: number) => void randomFillSync(mem.bytes(ptr, len))),
    sched_yield: sys(() => undefined),
    proc_exit: (code: number) => {
      throw new GuestExit(code);
    },
    proc_raise: sys(() => Errno.NOSYS),

    fd_write: sys((fd: number, iovs: number, n: number, out: number) => {
      const e = entry(fd);
      const bufs = mem.iovecs(iovs, n);
      let written: number;
      if (e.type === 'stdio') {
        if (e.n === 0) throw new WasiError(Errno.BADF);
        written = writeOut(e.n, bufs);
      } else if (e.type === 'file') {
        written = writeFile(e, bufs, e.pos);
        e.pos = e.append ? e.size : e.pos + written;
      } else throw new WasiError(Errno.ISDIR);
      mem.view.setUint32(out, written, true);
    }),
    fd_pwrite: sys((fd: number, iovs: number, n: number, offset: bigint, out: number) => {
      const e = entry(fd);
      if (e.type !== 'file') throw new WasiError(e.type === 'dir' ? Errno.ISDIR : Errno.SPIPE);
      const append = e.append;
      e.append = false;
      try {
        mem.view.setUint32(out, writeFile(e, mem.iovecs(iovs, n), Number(offset)), true);
      } finally {
        e.append = append;
      }
    }),
    fd_read: sys((fd: number, iovs: number, n: number, out: number) => {
      const e = entry(fd);
      const bufs = mem.iovecs(iovs, n);
      let got = 0;
      if (e.type === 'stdio') {
        if (e.n !== 0) throw new WasiError(Errno.BADF);
        if (opts.stdin !== null) for (const b of bufs) {
          const r = opts.stdin(b);
          got += r;
          if (r < b.length) break;
        }
      } else if (e.type === 'file') {
        got = readFile(e, bufs, e.pos);
        e.pos += got;
      } else throw new WasiError(Errno.ISDIR);
      mem.view.setUint32(out, got, true);
    }),
    fd_pread: sys((fd: number, iovs: number, n: number, offset: bigint, out: number) => {
      const e = entry(fd);
      if (e.type !== 'file') throw new WasiError(e.type === 'dir' ? Errno.ISDIR : Errno.SPIPE);
      mem.view.setUint32(out, readFile(e, mem.iovecs(iovs, n), Number(offset)), true);
    }),
    fd_seek: sys((fd: number, offset: bigint, whence: number, out: number) => {
      const e = entry(fd);
      if (e.type !== 'file') throw new WasiError(e.type === 'dir' ? Errno.ISDIR : Errno.SPIPE);
      const base = whence === 0 ? 0 : whence === 1 ? e.pos : e.size;
      const next = base + Number(offset);
      if (next < 0) throw new WasiError(Errno.INVAL);
      e.pos = next;
      mem.view.setBigUint64(out, BigInt(next), true);
    }),
    fd_tell: sys((fd: number, out: number) => {
      const e = entry(fd);
      if (e.type !== 'file') throw new WasiError(Errno.SPIPE);
      mem.view.setBigUint64(out, BigInt(e.pos), true);
    }),
    fd_close: sys((fd: number) => {
      const e = entry(fd);
      if (e.type === 'file') fs.closeSync(e.fd);
      fds.delete(fd);
    }),
    fd_sync: sys((fd: number) => {
      const e = entry(fd);
      if (e.type === 'file') fs.fsyncSync(e.fd);
    }),
    fd_datasync: sys((fd: number) => {
      const e = entry(fd);
      if (e.type === 'file') fs.fdatasyncSync(e.fd);
    }),
    fd_advise: sys((fd: number) => void entry(fd)),
    fd_allocate: sys((fd: number, offset: bigint, len: bigint) => {
      const e = entry(fd);
      if (e.type !== 'file' || !e.write) throw new WasiError(Errno.BADF);
      const end = Number(offset + len);
      if (end > e.size) {
        opts.quota?.charge(end - e.size);
        fs.ftruncateSync(e.fd, end);
        e.size = end;
      }
    }),
    fd_fdstat_get: sys((fd: number, ptr: number) => {
      const e = entry(fd);
      const v = mem.view;
      const type = e.type === 'stdio' ? FILETYPE.char : e.type === 'dir' ? FILETYPE.dir : FILETYPE.file;
      v.setUint8(ptr, type);
      v.setUint16(ptr + 2, e.type === 'file' && e.append ? FDFLAG_APPEND : 0, true);
      let rights = RIGHTS_ALL;
      if (e.type === 'file') rights = (e.read ? RIGHT_FD_READ : 0n) | (e.write ? RIGHT_FD_WRITE : 0n) | (RIGHTS_ALL & ~(RIGHT_FD_READ | RIGHT_FD_WRITE));
      v.setBigUint64(ptr + 8, rights, true);
      v.setBigUint64(ptr + 16, RIGHTS_ALL, true);
    }),
    fd_fdstat_set_flags: sys((fd: number, flags: number) => {
      const e = entry(fd);
      if (e.type === 'file') e.append = (flags & FDFLAG_APPEND) !== 0;
    }),
    fd_fdstat_set_rights: sys((fd: number) => void entry(fd)),
    fd_filestat_get: sys((fd: number, ptr: number) => {
      const e = entry(fd);
      if (e.type === 'stdio') return writeFilestat(ptr, null, FILETYPE.char);
      if (e.type === 'file') return writeFilestat(ptr, fs.fstatSync(e.fd), FILETYPE.file);
      const r = resolvePath(e.mount, e.parts, '.').resolved;
      if (r.kind === 'config-dir') return writeFilestat(ptr, null, FILETYPE.dir);
      writeFilestat(ptr, fs.statSync(r.path), FILETYPE.dir);
    }),
    fd_filestat_set_size: sys((fd: number, size: bigint) => {
      const e = entry(fd);
      if (e.type !== 'file' || !e.write) throw new WasiError(Errno.BADF);
      const next = Number(size);
      if (next > e.size) opts.quota?.charge(next - e.size);
      else opts.quota?.credit(e.size - next);
      fs.ftruncateSync(e.fd, next);
      e.size = next;
    }),
    fd_filestat_set_times: sys((fd: number, atim: bigint, mtim: bigint, flags: number) => {
      const e = entry(fd);
      if (e.type !== 'file') return;
      const st = fs.fstatSync(e.fd);
      const pick = (t: bigint, set: number, now: number, old: number) => ((flags & now) !== 0 ? Date.now() / 1000 : (flags & set) !== 0 ? Number(t) / 1e9 : old / 1000);
      fs.futimesSync(e.fd, pick(atim, 1, 2, st.atimeMs), pick(mtim, 4, 8, st.mtimeMs));
    }),
    fd_prestat_get: sys((fd: number, ptr: number) => {
      const e = entry(fd);
      if (e.type !== 'dir' || e.preopen === null) throw new WasiError(Errno.BADF);
      mem.view.setUint8(ptr, 0);
      mem.view.setUint32(ptr + 4, Buffer.byteLength(e.preopen), true);
    }),
    fd_prestat_dir_name: sys((fd: number, ptr: number, len: number) => {
      const e = entry(fd);
      if (e.type !== 'dir' || e.preopen === null) throw new WasiError(Errno.BADF);
      mem.bytes(ptr, len).set(Buffer.from(e.preopen).subarray(0, len));
    }),
    fd_readdir: sys((fd: number, buf: number, len: number, cookie: bigint, out: number) => {
      const d = dirEntry(fd);
      const r = resolvePath(d.mount, d.parts, '.').resolved;
      const names: { name: string; type: number }[] = [
        { name: '.', type: FILETYPE.dir },
        { name: '..', type: FILETYPE.dir },
      ];
      if (r.kind === 'config-dir') {
        for (const n of [...(d.mount.host as Map<string, string>).keys()].sort()) names.push({ name: n, type: FILETYPE.file });
      } else if (r.kind === 'host') {
        for (const ent of fs.readdirSync(r.path, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
          names.push({ name: ent.name, type: ent.isDirectory() ? FILETYPE.dir : ent.isFile() ? FILETYPE.file : ent.isSymbolicLink() ? FILETYPE.symlink : FILETYPE.unknown });
        }
      }
      let used = 0;
      for (let i = Number(cookie); i < names.length && used < len; i++) {
        const n = names[i] as { name: string; type: number };
        const name = Buffer.from(n.name);
        const head = new Uint8Array(24);
        const hv = new DataView(head.buffer);
        hv.setBigUint64(0, BigInt(i + 1), true);
        hv.setBigUint64(8, BigInt(i + 1), true);
        hv.setUint32(16, name.length, true);
        hv.setUint8(20, n.type);
        const rec = Buffer.concat([head, name]);
        const take = Math.min(rec.length, len - used);
        mem.bytes(buf + used, take).set(rec.subarray(0, take));
        used += take;
      }
      mem.view.setUint32(out, used, true);
    }),
    fd_renumber: sys((from: number, to: number) => {
      const e = entry(from);
      const old = fds.get(to);
      if (old?.type === 'file') fs.closeSync(old.fd);
      fds.set(to, e);
      fds.delete(from);
    }),

    path_open: sys(
      (dirfd: number, _dirflags: number, p: number, plen: number, oflags: number, rightsBase: bigint, _ri: bigint, fdflags: number, out: number) => {
        const d = dirEntry(dirfd);
        const { resolved, parts } = resolve(dirfd, p, plen);
        const wantWrite = (rightsBase & RIGHT_FD_WRITE) !== 0n || (oflags & (OFLAG.creat | OFLAG.trunc)) !== 0 || (fdflags & FDFLAG_APPEND) !== 0;
        const wantRead = (rightsBase & RIGHT_FD_READ) !== 0n;
        if (resolved.kind === 'config-dir') {
          fds.set(nextFd, { type: 'dir', mount: d.mount, parts: [], preopen: null });
          mem.view.setUint32(out, nextFd++, true);
          return;
        }
        if (wantWrite && (resolved.kind !== 'host' || resolved.mount.readonly)) throw new WasiError(Errno.ROFS);
        const hostPath = resolved.path;
        let st: fs.Stats | null = null;
        try {
          st = fs.lstatSync(hostPath);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (oflags & OFLAG.creat) === 0) throw err;
        }
        if (st?.isSymbolicLink() === true) throw new WasiError(Errno.NOTCAPABLE, 'symlinks are not followed');
        if (st !== null && (oflags & OFLAG.creat) !== 0 && (oflags & OFLAG.excl) !== 0) throw new WasiError(Errno.EXIST);
        if (st?.isDirectory() === true || (oflags & OFLAG.directory) !== 0) {
          if (st === null) throw new WasiError(Errno.NOENT);
          if (!st.isDirectory()) throw new WasiError(Errno.NOTDIR);
          if (wantWrite && (oflags & (OFLAG.creat | OFLAG.trunc)) !== 0) throw new WasiError(Errno.ISDIR);
          fds.set(nextFd, { type: 'dir', mount: d.mount, parts, preopen: null });
          mem.view.setUint32(out, nextFd++, true);
          return;
        }
        if (st !== null && (oflags & OFLAG.trunc) !== 0) opts.quota?.credit(st.size);
        let flags = fs.constants.O_NOFOLLOW | (wantWrite ? (wantRead ? fs.constants.O_RDWR : fs.constants.O_WRONLY) : fs.constants.O_RDONLY);
        if ((oflags & OFLAG.creat) !== 0) flags |= fs.constants.O_CREAT;
        if ((oflags & OFLAG.excl) !== 0) flags |= fs.constants.O_EXCL;
        if ((oflags & OFLAG.trunc) !== 0) flags |= fs.constants.O_TRUNC;
        const fd = fs.openSync(hostPath, flags, 0o644);
        const size = fs.fstatSync(fd).size;
        fds.set(nextFd, { type: 'file', fd, mount: resolved.mount, read: wantRead || !wantWrite, write: wantWrite, append: (fdflags & FDFLAG_APPEND) !== 0, pos: 0, size, hostPath });
        mem.view.setUint32(out, nextFd++, true);
      },
    ),
    path_filestat_get: sys((fd: number, _flags: number, p: number, len: number, ptr: number) => {
      const r = resolve(fd, p, len).resolved;
      if (r.kind === 'config-dir') return writeFilestat(ptr, null, FILETYPE.dir);
      const st = fs.lstatSync(r.path);
      writeFilestat(ptr, st, typeOf(st));
    }),
    path_filestat_set_times: sys((fd: number, _fl: number, p: number, len: number, atim: bigint, mtim: bigint, flags: number) => {
      const hostPath = writableHost(resolve(fd, p, len).resolved);
      const st = fs.lstatSync(hostPath);
      const pick = (t: bigint, set: number, now: number, old: number) => ((flags & now) !== 0 ? Date.now() / 1000 : (flags & set) !== 0 ? Number(t) / 1e9 : old / 1000);
      fs.utimesSync(hostPath, pick(atim, 1, 2, st.atimeMs), pick(mtim, 4, 8, st.mtimeMs));
    }),
    path_create_directory: sys((fd: number, p: number, len: number) => {
      const hostPath = writableHost(resolve(fd, p, len).resolved);
      opts.quota?.charge(4096);
      fs.mkdirSync(hostPath);
    }),
    path_remove_directory: sys((fd: number, p: number, len: number) => {
      fs.rmdirSync(writableHost(resolve(fd, p, len).resolved));
      opts.quota?.credit(4096);
    }),
    path_unlink_file: sys((fd: number, p: number, len: number) => {
      const hostPath = writableHost(resolve(fd, p, len).resolved);
      const st = fs.lstatSync(hostPath);
      if (st.isDirectory()) throw new WasiError(Errno.ISDIR);
      fs.unlinkSync(hostPath);
      if (st.isFile() && st.nlink <= 1) opts.quota?.credit(st.size);
    }),
    path_rename: sys((fd: number, op: number, olen: number, nfd: number, np: number, nlen: number) => {
      const from = writableHost(resolve(fd, op, olen).resolved);
      const to = resolve(nfd, np, nlen).resolved;
      const toPath = writableHost(to);
      if (path.resolve(from) === path.resolve(toPath)) return;
      fs.renameSync(from, toPath);
    }),
    path_readlink: sys((fd: number, p: number, len: number, buf: number, blen: number, out: number) => {
      const r = resolve(fd, p, len).resolved;
      if (r.kind !== 'host') throw new WasiError(Errno.INVAL);
      const target = Buffer.from(fs.readlinkSync(r.path));
      const n = Math.min(blen, target.length);
      mem.bytes(buf, n).set(target.subarray(0, n));
      mem.view.setUint32(out, n, true);
    }),
    // No links: a guest-made symlink or hard link is the classic way out of a directory sandbox.
    path_symlink: sys(() => Errno.NOTCAPABLE),
    path_link: sys(() => Errno.NOTCAPABLE),

    poll_oneoff: sys((inPtr: number, outPtr: number, n: number, nevents: number) => {
      const v = mem.view;
      let minTimeout: bigint | null = null;
      const ready: { userdata: bigint; type: number }[] = [];
      for (let i = 0; i < n; i++) {
        const s = inPtr + i * 48;
        const userdata = v.getBigUint64(s, true);
        const tag = v.getUint8(s + 8);
        if (tag === 0) {
          const clockId = v.getUint32(s + 16, true);
          let timeout = v.getBigUint64(s + 24, true);
          if ((v.getUint16(s + 40, true) & 1) !== 0) {
            const now = clockId === 0 ? BigInt(Date.now()) * 1_000_000n : process.hrtime.bigint();
            timeout = timeout > now ? timeout - now : 0n;
          }
          if (minTimeout === null || timeout < minTimeout) minTimeout = timeout;
          ready.push({ userdata, type: 0 });
        } else {
          ready.push({ userdata, type: tag });
        }
      }
      const fdEvents = ready.filter((r) => r.type !== 0);
      // File and stdio descriptors are always ready; only pure sleeps block.
      const events = fdEvents.length > 0 ? fdEvents : ready.filter((r) => r.type === 0);
      if (fdEvents.length === 0 && minTimeout !== null && minTimeout > 0n) sleepSync(Number(minTimeout / 1_000_000n));
      events.forEach((ev, i) => {
        const o = outPtr + i * 32;
        v.setBigUint64(o, ev.userdata, true);
        v.setUint16(o + 8, 0, true);
        v.setUint8(o + 10, ev.type);
        v.setBigUint64(o + 16, 0n, true);
        v.setUint16(o + 24, 0, true);
      });
      v.setUint32(nevents, events.length, true);
    }),

    sock_accept: sys(() => Errno.NOTSUP),
    sock_recv: sys(() => Errno.NOTSUP),
    sock_send: sys(() => Errno.NOTSUP),
    sock_shutdown: sys(() => Errno.NOTSUP),
  };
  return { imports: wasi as unknown as Record<string, WebAssembly.ImportValue>, memory: mem };
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Block this thread (the guest's own process) without spinning. */
export function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(sleepCell, 0, 0, ms);
}
