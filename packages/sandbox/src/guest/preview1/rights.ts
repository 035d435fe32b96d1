/** preview1 rights. lowcloud does not narrow rights (fd_fdstat_set_rights is ENOTSUP, as in wasmtime); it reports them. */
const R = {
  FD_DATASYNC: 1n << 0n,
  FD_READ: 1n << 1n,
  FD_SEEK: 1n << 2n,
  FD_FDSTAT_SET_FLAGS: 1n << 3n,
  FD_SYNC: 1n << 4n,
  FD_TELL: 1n << 5n,
  FD_WRITE: 1n << 6n,
  FD_ADVISE: 1n << 7n,
  FD_ALLOCATE: 1n << 8n,
  PATH_CREATE_DIRECTORY: 1n << 9n,
  PATH_CREATE_FILE: 1n << 10n,
  PATH_LINK_SOURCE: 1n << 11n,
  PATH_LINK_TARGET: 1n << 12n,
  PATH_OPEN: 1n << 13n,
  FD_READDIR: 1n << 14n,
  PATH_READLINK: 1n << 15n,
  PATH_RENAME_SOURCE: 1n << 16n,
  PATH_RENAME_TARGET: 1n << 17n,
  PATH_FILESTAT_GET: 1n << 18n,
  PATH_FILESTAT_SET_SIZE: 1n << 19n,
  PATH_FILESTAT_SET_TIMES: 1n << 20n,
  FD_FILESTAT_GET: 1n << 21n,
  FD_FILESTAT_SET_SIZE: 1n << 22n,
  FD_FILESTAT_SET_TIMES: 1n << 23n,
  PATH_SYMLINK: 1n << 24n,
  PATH_REMOVE_DIRECTORY: 1n << 25n,
  PATH_UNLINK_FILE: 1n << 26n,
  POLL_FD_READWRITE: 1n << 27n,
} as const;
export const RIGHTS = R;

export const RIGHTS_ALL = 0x1fffffffn;
/** A file's rights apart from reading and writing. */
const FILE_COMMON = R.FD_SEEK | R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_TELL | R.FD_ADVISE | R.FD_FILESTAT_GET | R.FD_FILESTAT_SET_TIMES | R.POLL_FD_READWRITE;
/** What a directory descriptor may do (no seek, no resize: those are a file's). */
export const DIR_RIGHTS =
  R.PATH_CREATE_DIRECTORY | R.PATH_CREATE_FILE | R.PATH_LINK_SOURCE | R.PATH_LINK_TARGET | R.PATH_OPEN | R.FD_READDIR | R.PATH_READLINK | R.PATH_RENAME_SOURCE |
  R.PATH_RENAME_TARGET | R.PATH_SYMLINK | R.PATH_REMOVE_DIRECTORY | R.PATH_UNLINK_FILE | R.PATH_FILESTAT_GET | R.PATH_FILESTAT_SET_TIMES | R.FD_FILESTAT_GET |
  R.FD_FILESTAT_SET_TIMES | R.FD_SYNC;
export const FILE_RIGHTS = FILE_COMMON | R.FD_READ | R.FD_WRITE | R.FD_DATASYNC | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE;
export const DIR_INHERITING = DIR_RIGHTS | FILE_RIGHTS;

export function fileRights(read: boolean, write: boolean): bigint {
  return FILE_COMMON | (read ? R.FD_READ : 0n) | (write ? R.FD_WRITE | R.FD_DATASYNC | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE : 0n);
}
