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

/** Fields of /proc/PID/stat after the command name (index 0 = state). */
function readStat(pid: number): string[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}
