import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * What one directory entry (a file, directory, symlink or hard link) costs against the disk grant,
 * on top of a file's bytes: a block, so that empty files and directories are not free and the
 * number of inodes a guest can make is bounded by its grant.
 */
export const ENTRY_BYTES = 4096;

/**
 * The disk grant's one rule, for the quota (the guest's ledger starts from it) and for what
 * `status` reports alike: ENTRY_BYTES per entry below `dir` plus the size of each distinct file
 * (hard links count their bytes once). Symlinks are never followed (a link to / must not count /).
 */
function cost(st: fs.Stats, seen: Set<string>): number {
  if (!st.isFile()) return ENTRY_BYTES;
  const key = `${st.dev}:${st.ino}`;
  if (seen.has(key)) return ENTRY_BYTES;
  seen.add(key);
  return ENTRY_BYTES + st.size;
}

/** What the contents of `dir` cost against the disk grant (see `cost`), walked synchronously. */
export function usageOf(dir: string): number {
  let total = 0;
  const seen = new Set<string>();
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop() as string;
    let names: string[];
    try {
      names = fs.readdirSync(d);
    } catch {
      continue; // removed while we walk, or unreadable: nothing of it to count
    }
    for (const name of names) {
      const p = path.join(d, name);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(p);
      } catch {
        continue; // removed while we walk
      }
      total += cost(st, seen);
      if (st.isDirectory()) stack.push(p);
    }
  }
  return total;
}

/** `lstat` calls in flight at once during an asynchronous walk: it never holds the whole thread pool. */
const LSTAT_BATCH = 32;

/**
 * The same figure as `usageOf`, walked asynchronously in small batches, so that a process (the
 * agent) keeps serving while a directory of 50,000 files is walked. Entries removed during the
 * walk count as they were seen (or not at all), as in `usageOf`.
 */
export async function usageOfAsync(dir: string): Promise<number> {
  let total = 0;
  const seen = new Set<string>();
  const stack = [dir];
  const count = async (batch: string[]) => {
    // An entry that cannot be stat'ed was removed during the walk (the agent is root: no EACCES here),
    // and counts as not seen, as in usageOf.
    const stats = await Promise.all(batch.map((p) => fsp.lstat(p).catch(() => null)));
    for (const [i, st] of stats.entries()) {
      if (st === null) continue; // removed while we walk
      total += cost(st, seen);
      if (st.isDirectory()) stack.push(batch[i] as string);
    }
  };
  while (stack.length > 0) {
    const d = stack.pop() as string;
    let entries: fs.Dir;
    try {
      entries = await fsp.opendir(d, { bufferSize: LSTAT_BATCH });
    } catch {
      continue; // removed while we walk, or not a directory: nothing of it to count
    }
    let batch: string[] = [];
    try {
      for await (const e of entries) {
        batch.push(path.join(d, e.name));
        if (batch.length >= LSTAT_BATCH) {
          await count(batch);
          batch = [];
        }
      }
    } catch {
      // The directory went away mid-listing (the guest removed it): count what was seen.
    }
    await count(batch);
  }
  return total;
}
