import fs from 'node:fs';
import { Errno, WasiError } from './errno.js';

/**
 * The path walk: resolves a guest path against a directory descriptor the way cap-std does for
 * wasmtime, one component at a time, never above that directory.
 *
 * Node has no openat(2). `/proc/self/fd/N/name` is one: the kernel resolves the magic link
 * `/proc/self/fd/N` to the directory that descriptor holds (not to a path, so renaming it or its
 * parents changes nothing) and then looks up `name` in it. Every directory on the way is opened
 * with O_DIRECTORY | O_NOFOLLOW from its parent's descriptor, so what the walk checked is what the
 * next step uses: there is no time-of-check to time-of-use gap for a concurrent rename or symlink
 * swap to use (the two-guest race of issue 9 finds nothing to swap). Symlinks are read with
 * readlink on the held parent and resolved by this walk under the same rules: a relative target
 * continues from the link's directory, an absolute one or one climbing above the walk's root is
 * refused, and more than MAX_LINKS links end in ELOOP. The final step of every operation is again
 * relative to a held descriptor, with O_NOFOLLOW (or the *at call's own no-follow behaviour).
 *
 * What remains: the guest host process itself could open any path it can see, so a bug in this
 * file would not be contained by it; the kernel wall of issue 9 (its own uid, a mount namespace
 * holding only the guest's own directories, seccomp) is what bounds such a bug.
 */

const O_DIR = fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW;
/** Linux's own limit (MAXSYMLINKS). */
const MAX_LINKS = 40;
/**
 * The longest path a guest may pass, in bytes: Linux's PATH_MAX. Without it a guest's path of many
 * MiB was split into millions of components on the host heap (a V8 fatal error in the guest host).
 */
export const PATH_MAX = 4096;

/** ENAMETOOLONG for a guest path (or its byte length) past PATH_MAX, before anything is made of it. */
export function checkPathLength(rel: string | number): void {
  const len = typeof rel === 'number' ? rel : rel.length;
  if (len > PATH_MAX) throw new WasiError(Errno.NAMETOOLONG, 'path longer than PATH_MAX');
}

/** The host path of `name` inside the directory held by descriptor `dirFd`. */
export const at = (dirFd: number, name = ''): string => (name === '' ? `/proc/self/fd/${dirFd}` : `/proc/self/fd/${dirFd}/${name}`);

let checked = false;
/** The walk needs /proc (a guest host namespace must mount it); say so plainly if it is missing. */
export function checkProc(probeFd: number): void {
  if (checked) return;
  try {
    const a = fs.fstatSync(probeFd);
    const b = fs.statSync(at(probeFd));
    if (a.dev === b.dev && a.ino === b.ino) {
      checked = true;
      return;
    }
  } catch {
    // reported below
  }
  throw new Error('the guest filesystem needs /proc/self/fd (the per-component path walk opens through it): mount proc in the guest host namespace');
}

export interface Located {
  /** Descriptor of the directory that holds the final component (the walk's root or one it opened). */
  dir: number;
  /** The final component, `.` when the path names `dir` itself; with a `/` if the guest wrote one. */
  name: string;
  /** Close the directories the walk opened. */
  release(): void;
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/**
 * Resolve `rel` against the directory held by `root`. `follow`: resolve a symlink in the final
 * component too (a trailing slash always does, as in POSIX).
 */
export function locate(root: number, rel: string, follow: boolean): Located {
  checkPathLength(rel);
  if (rel.includes('\0')) throw new WasiError(Errno.INVAL, 'NUL in a path');
  if (rel === '') throw new WasiError(Errno.NOENT);
  if (rel.startsWith('/')) throw new WasiError(Errno.NOTCAPABLE, 'absolute paths are not allowed');
  const stack = [root];
  const release = () => {
    for (const fd of stack.slice(1)) fs.closeSync(fd);
    stack.length = 1;
  };
  const top = () => stack[stack.length - 1] as number;
  // Components still to walk, last first; `slash`: the component was followed by a `/`.
  const todo: { seg: string; slash: boolean }[] = [];
  const push = (p: string) => {
    const segs = p.split('/');
    for (let i = segs.length - 1; i >= 0; i--) {
      const seg = segs[i] as string;
      if (seg === '') continue;
      todo.push({ seg, slash: i < segs.length - 1 });
    }
  };
  push(rel);
  let links = 0;
  try {
    while (todo.length > 0) {
      const { seg, slash } = todo.pop() as { seg: string; slash: boolean };
      const last = todo.length === 0;
      if (seg === '.') {
        if (last) return { dir: top(), name: slash ? './' : '.', release };
        continue;
      }
      if (seg === '..') {
        if (stack.length === 1) throw new WasiError(Errno.NOTCAPABLE, 'path escapes its directory');
        fs.closeSync(stack.pop() as number);
        if (last) return { dir: top(), name: '.', release };
        continue;
      }
      if (last && !follow && !slash) return { dir: top(), name: seg, release };
      if (last) {
        // The final component: follow it only if it is a symlink.
        const target = readLinkOrNull(top(), seg);
        if (target === null) return { dir: top(), name: slash ? `${seg}/` : seg, release };
        if (++links > MAX_LINKS) throw new WasiError(Errno.LOOP);
        enter(target, slash);
        continue;
      }
      let fd: number;
      try {
        fd = fs.openSync(at(top(), seg), O_DIR);
      } catch (err) {
        const code = errCode(err);
        if (code !== 'ELOOP' && code !== 'ENOTDIR') throw err;
        const target = readLinkOrNull(top(), seg);
        if (target === null) throw err;
        if (++links > MAX_LINKS) throw new WasiError(Errno.LOOP);
        enter(target, true);
        continue;
      }
      stack.push(fd);
    }
    return { dir: top(), name: '.', release };
  } catch (err) {
    release();
    throw err;
  }

  function enter(target: string, slash: boolean): void {
    if (target.startsWith('/')) throw new WasiError(Errno.NOTCAPABLE, 'a symlink to an absolute path is not followed');
    if (target === '') throw new WasiError(Errno.NOENT);
    push(slash && !target.endsWith('/') ? `${target}/` : target);
  }
}

/** The target of the symlink `name` in `dir`, or null when it is not a symlink (or does not exist). */
function readLinkOrNull(dir: number, name: string): string | null {
  try {
    return fs.readlinkSync(at(dir, name));
  } catch (err) {
    const code = errCode(err);
    if (code === 'EINVAL' || code === 'ENOENT') return null;
    throw err;
  }
}
