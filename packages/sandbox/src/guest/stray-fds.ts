import fs from 'node:fs';

/** <asm-generic/fcntl.h>: as /proc/PID/fdinfo shows a descriptor's flags (octal). */
const O_CLOEXEC = 0o2000000;

/**
 * Closes every file descriptor this process inherited other than standard input, output, error
 * and `keep`, before any guest code runs. Node.js's `spawn` and bubblewrap pass on whatever
 * descriptor their own parent left without close-on-exec (a CI runner's pipe, a directory a
 * service manager or a shell opened): a directory descriptor from outside the wall would let code
 * that escaped the WebAssembly sandbox `openat` its way past the mount namespace (compare runc's
 * CVE-2024-21626). Everything this process opened itself (Node.js and libuv open with
 * close-on-exec) survived no exec, so a descriptor without that flag is one that was inherited.
 * The converse gap: Node.js marks descriptors 0-16 close-on-exec as it starts (measured with
 * strace on 20 and 24), inherited or not. So does the Node.js that starts a guest host, so what
 * reaches one by accident is numbered 17 or more, where nothing marked it: all of it is closed.
 *
 * Returns what it closed. Without /proc (not Linux) there is nothing to read, and nothing is
 * closed: the wall, which needs Linux, is not there either.
 */
export function closeInheritedFds(keep: readonly number[]): number[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const closed: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isSafeInteger(fd) || fd <= 2 || keep.includes(fd)) continue;
    let info: string;
    try {
      info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the directory's own descriptor, closed by now
    }
    const flags = /^flags:\s*([0-7]+)$/m.exec(info)?.[1];
    if (flags === undefined || (parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
    try {
      fs.closeSync(fd);
      closed.push(fd);
    } catch {
      // closed in the meantime
    }
  }
  return closed;
}
