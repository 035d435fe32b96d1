import fs from 'node:fs';
import path from 'node:path';

/**
 * What one directory entry (a file, directory, symlink or hard link) costs against the disk grant,
 * on top of a file's bytes: a block, so that empty files and directories are not free and the
 * number of inodes a guest can make is bounded by its grant.
 */
export const ENTRY_BYTES = 4096;

/**
 * What the contents of `dir` cost against the disk grant: ENTRY_BYTES per entry below it plus the
 * size of each distinct file (hard links count their bytes once). Symlinks are never followed (a
 * link to / must not count /). Shared by the host (usage reports) and the guest (the quota's start).
 */
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
      total += ENTRY_BYTES;
      if (st.isDirectory()) stack.push(p);
      else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        if (!seen.has(key)) {
          seen.add(key);
          total += st.size;
        }
      }
    }
  }
  return total;
}
