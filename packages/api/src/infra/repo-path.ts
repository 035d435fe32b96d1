/**
 * One rule for every path an infra file names (`binary`, `config`), whichever source reads it (the
 * working tree or a git revision): relative to the infra file, and inside the repository root after
 * every symlink is followed. Both sources answer the same `lookup` question about one path and this
 * walk does the rest, so they cannot disagree about the same commit.
 */

/** What is at a path (relative to the repository root, `/`-separated), without following it. */
export type Entry = { kind: 'file' } | { kind: 'dir' } | { kind: 'symlink'; target: string } | { kind: 'missing' } | { kind: 'other'; what: string };

export type Resolution =
  /** The regular file's path relative to the repository root. */
  | { kind: 'file'; path: string }
  | { kind: 'missing'; reason: string }
  /** Outside the repository, absolute, or not a regular file: an error, never a read. */
  | { kind: 'refused'; reason: string };

const MAX_LINKS = 40; // as Linux's MAXSYMLINKS

/**
 * Resolve `rel` (as written in the infra file) from `dir` (the infra file's directory, relative to
 * the root; '' for the root itself), component by component like the kernel does, with `..` taken
 * physically after a symlink is expanded. A symlink whose target is absolute is refused: in git it
 * depends on where the repository is checked out, and in the working tree it names a file the
 * commit does not hold.
 */
export async function resolveRepoPath(dir: string, rel: string, lookup: (p: string) => Promise<Entry>): Promise<Resolution> {
  if (rel.startsWith('/') || /^[A-Za-z]:[\\/]/.test(rel)) return { kind: 'refused', reason: `${rel} is an absolute path; write it relative to the infra file, inside the repository` };
  if (rel.includes('\0')) return { kind: 'refused', reason: 'the path contains a NUL byte' };
  const todo = [...split(dir), ...split(rel)];
  const done: string[] = [];
  let last: Entry['kind'] = 'dir';
  let links = 0;
  let via = '';
  while (todo.length > 0) {
    const part = todo.shift() as string;
    if (part === '.') continue;
    if (part === '..') {
      if (done.length === 0) return { kind: 'refused', reason: `${rel} points outside the repository${via}` };
      done.pop();
      last = 'dir';
      continue;
    }
    const here = [...done, part].join('/');
    const e = await lookup(here);
    if (e.kind === 'missing') return { kind: 'missing', reason: `${rel} does not exist${via}` };
    if (e.kind === 'other') return { kind: 'refused', reason: `${here} is ${e.what}, not a regular file` };
    if (e.kind === 'symlink') {
      if (++links > MAX_LINKS) return { kind: 'refused', reason: `${rel}: more than ${MAX_LINKS} symlinks` };
      if (e.target.startsWith('/')) return { kind: 'refused', reason: `${here} is a symlink to the absolute path ${e.target}; only relative links inside the repository are followed` };
      via = ` (through the symlink ${here} -> ${e.target})`;
      todo.unshift(...split(e.target));
      continue;
    }
    if (e.kind === 'file' && todo.length > 0) return { kind: 'missing', reason: `${rel}: ${here} is a file, not a directory` };
    done.push(part);
    last = e.kind;
  }
  if (last !== 'file') return { kind: 'missing', reason: `${rel} is a directory, not a file` };
  return { kind: 'file', path: done.join('/') };
}

function split(p: string): string[] {
  return p.split('/').filter((s) => s !== '');
}
