/** WASI preview1 errno values (wasi-libc's wasi/api.h); the fs core throws them, layers map them. */
export const Errno = {
  SUCCESS: 0,
  ACCES: 2,
  AGAIN: 6,
  BADF: 8,
  BUSY: 10,
  DQUOT: 19,
  EXIST: 20,
  FBIG: 22,
  ILSEQ: 25,
  INVAL: 28,
  IO: 29,
  ISDIR: 31,
  LOOP: 32,
  MLINK: 34,
  NAMETOOLONG: 37,
  NOENT: 44,
  NOSPC: 51,
  NOSYS: 52,
  NOTSOCK: 57,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTSUP: 58,
  PERM: 63,
  ROFS: 69,
  SPIPE: 70,
  XDEV: 75,
  NOTCAPABLE: 76,
} as const;

export class WasiError extends Error {
  constructor(
    readonly errno: number,
    message = `errno ${errno}`,
  ) {
    super(message);
  }
}

const FROM_NODE: Record<string, number> = {
  ENOENT: Errno.NOENT,
  EEXIST: Errno.EXIST,
  EISDIR: Errno.ISDIR,
  ENOTDIR: Errno.NOTDIR,
  ENOTEMPTY: Errno.NOTEMPTY,
  EACCES: Errno.ACCES,
  EPERM: Errno.PERM,
  EINVAL: Errno.INVAL,
  EBADF: Errno.BADF,
  EBUSY: Errno.BUSY,
  ELOOP: Errno.LOOP,
  ENOSPC: Errno.NOSPC,
  EDQUOT: Errno.DQUOT,
  EXDEV: Errno.XDEV,
  EROFS: Errno.ROFS,
  ESPIPE: Errno.SPIPE,
  ENAMETOOLONG: Errno.NAMETOOLONG,
  EFBIG: Errno.FBIG,
  EAGAIN: Errno.AGAIN,
  EMLINK: Errno.MLINK,
  ENOTSOCK: Errno.NOTSOCK,
  EILSEQ: Errno.ILSEQ,
};

/** Map a host error to a WASI errno; anything unexpected is EIO, never a host crash. */
export function errnoOf(err: unknown): number {
  if (err instanceof WasiError) return err.errno;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return (code !== undefined ? FROM_NODE[code] : undefined) ?? Errno.IO;
}
