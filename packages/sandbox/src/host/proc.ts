import fs from 'node:fs';

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used, from /proc/PID/stat; null when it is gone. */
export function cpuSeconds(pid: number): number | null {
  const stat = readStat(pid);
  if (stat === null) return null;
  return (Number(stat[11]) + Number(stat[12])) / TICKS;
}

/** The process start time in clock ticks since boot: with the pid, it identifies a process. */
export function startTime(pid: number): string | null {
  const stat = readStat(pid);
  // A zombie has exited; only its parent's wait() is missing (PID 1 in a container may never reap).
  return stat === null || stat[0] === 'Z' ? null : (stat[19] ?? null);
}

/** Resident set size in bytes. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

/**
 * The process and every descendant it has (through each thread's /proc/PID/task/TID/children),
 * the process first. Inside the wall the guest host is pid 1 of its own pid namespace: a child
 * whose parent exits is re-parented to it, so its tree is every process of the namespace (setns
 * into another is refused by seccomp). Bounded: at most 4096 processes.
 */
export function processTree(pid: number): number[] {
  const out = [pid];
  const seen = new Set(out);
  for (let i = 0; i < out.length && out.length < 4096; i++) {
    let tasks: string[];
    try {
      tasks = fs.readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const t of tasks) {
      let children: string;
      try {
        children = fs.readFileSync(`/proc/${out[i]}/task/${t}/children`, 'utf8');
      } catch {
        continue; // the thread ended meanwhile
      }
      for (const c of children.split(' ')) {
        const n = Number(c);
        if (c !== '' && !seen.has(n)) {
          seen.add(n);
          out.push(n);
        }
      }
    }
  }
  return out;
}

/**
 * CPU seconds of a tree of processes: each one's own (user + system) and what its children that
 * it already reaped used (cutime + cstime), so a child that ended is still counted, once. Null
 * when the first (the root) is gone.
 */
export function treeCpuSeconds(pids: readonly number[]): number | null {
  let sum = 0;
  for (const [i, pid] of pids.entries()) {
    const stat = readStat(pid);
    if (stat === null) {
      if (i === 0) return null;
      continue;
    }
    sum += (Number(stat[11]) + Number(stat[12]) + Number(stat[13]) + Number(stat[14])) / TICKS;
  }
  return sum;
}

/** Resident set size of a process and its descendants together (shared pages counted in each: an upper bound). Null when the root is gone. */
export function treeRssBytes(pid: number): number | null {
  const tree = processTree(pid);
  let sum = 0;
  for (const [i, p] of tree.entries()) {
    const rss = rssBytes(p);
    if (rss === null && i === 0) return null;
    sum += rss ?? 0;
  }
  return sum;
}

/** Fields of /proc/PID/stat after the command name (index 0 = state). */
function readStat(pid: number): string[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}
