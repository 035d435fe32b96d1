import fs from 'node:fs';
import path from 'node:path';
import { SandboxSettingError } from '../errors.js';

/**
 * A per-guest cgroup (v1: one directory per controller; v2: one directory). Created before the
 * guest host is started and joined by its launcher before any guest code runs (see launch.ts);
 * removed after it is gone. Every directory it made is in `dirs`, so a re-attaching agent (and the
 * launcher itself) can remove them.
 */
export const V1_ROOT = '/sys/fs/cgroup';

/** The directory under each hierarchy that holds the guests' cgroups (`LOWCLOUD_CGROUP_PARENT`, default `lowcloud`). */
export function cgroupParent(): string {
  const p = process.env.LOWCLOUD_CGROUP_PARENT ?? 'lowcloud';
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(p)) throw new SandboxSettingError('LOWCLOUD_CGROUP_PARENT', `"${p}" is not a plain directory name (letters, digits, _ and -, at most 64)`);
  return p;
}

/** Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid). */
export function cgroup2Root(): string | null {
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) return '/sys/fs/cgroup';
  if (fs.existsSync('/sys/fs/cgroup/unified/cgroup.controllers')) return '/sys/fs/cgroup/unified';
  return null;
}

const PERIOD = 100_000;

/** The kernel limits of one guest host's cgroup (each grant module asks for its own). */
export interface CgroupLimits {
  memoryBytes?: number;
  cpuCores?: number;
  /** pids.max: processes and threads (the wall's task limit). */
  tasks?: number;
}

export class GuestCgroup {
  private constructor(
    readonly version: 'v1' | 'v2',
    readonly dirs: { memory?: string; cpu?: string; pids?: string },
  ) {}

  /** Every directory of this cgroup (each gets the guest host's pid in its cgroup.procs). */
  get all(): string[] {
    return [...new Set([this.dirs.memory, this.dirs.cpu, this.dirs.pids].filter((d): d is string => d !== undefined))];
  }

  /**
   * Make the directories and write the limits. Throws (having removed what it made) when the
   * kernel refuses any of it: the guest must then not run.
   */
  static create(version: 'v1' | 'v2', name: string, limits: CgroupLimits, controllers: string[]): GuestCgroup {
    const made: string[] = [];
    try {
      if (version === 'v2') {
        const root = cgroup2Root() ?? '/sys/fs/cgroup';
        const dir = mkGuestDir(root, name, made, true);
        if (limits.memoryBytes !== undefined && controllers.includes('memory')) {
          fs.writeFileSync(path.join(dir, 'memory.max'), String(limits.memoryBytes));
          tryWrite(path.join(dir, 'memory.swap.max'), '0');
        }
        if (limits.cpuCores !== undefined && controllers.includes('cpu')) fs.writeFileSync(path.join(dir, 'cpu.max'), `${Math.round(limits.cpuCores * PERIOD)} ${PERIOD}`);
        if (limits.tasks !== undefined && controllers.includes('pids')) fs.writeFileSync(path.join(dir, 'pids.max'), String(limits.tasks));
        return new GuestCgroup('v2', {
          ...(limits.memoryBytes !== undefined && controllers.includes('memory') ? { memory: dir } : {}),
          ...(limits.cpuCores !== undefined && controllers.includes('cpu') ? { cpu: dir } : {}),
          ...(limits.tasks !== undefined && controllers.includes('pids') ? { pids: dir } : {}),
        });
      }
      const dirs: { memory?: string; cpu?: string; pids?: string } = {};
      if (limits.tasks !== undefined && controllers.includes('pids')) {
        dirs.pids = mkGuestDir(path.join(V1_ROOT, 'pids'), name, made, false);
        fs.writeFileSync(path.join(dirs.pids, 'pids.max'), String(limits.tasks));
      }
      if (limits.memoryBytes !== undefined && controllers.includes('memory')) {
        dirs.memory = mkGuestDir(path.join(V1_ROOT, 'memory'), name, made, false);
        fs.writeFileSync(path.join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        tryWrite(path.join(dirs.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
      }
      if (limits.cpuCores !== undefined && controllers.includes('cpu')) {
        dirs.cpu = mkGuestDir(path.join(V1_ROOT, 'cpu'), name, made, false);
        fs.writeFileSync(path.join(dirs.cpu, 'cpu.cfs_period_us'), String(PERIOD));
        fs.writeFileSync(path.join(dirs.cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpuCores * PERIOD)));
      }
      return new GuestCgroup('v1', dirs);
    } catch (err) {
      for (const d of made.reverse()) removeCgroupDir(d);
      throw new Error(`cgroup ${version}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /**
   * Write new memory and CPU limits to a cgroup whose guest host already runs (a warm host taken
   * by its guest, warm-pool.ts): null lifts a limit. Only the directories it was made with; throws
   * when one is missing or the kernel refuses a value (the caller then does not use the host).
   */
  setLimits(limits: { memoryBytes: number | null; cpuCores: number | null }): void {
    const { memory, cpu } = this.dirs;
    if (memory === undefined || cpu === undefined) throw new Error('the cgroup has no memory or cpu controller to set');
    const quota = limits.cpuCores === null ? null : Math.round(limits.cpuCores * PERIOD);
    if (this.version === 'v2') {
      fs.writeFileSync(path.join(memory, 'memory.max'), limits.memoryBytes === null ? 'max' : String(limits.memoryBytes));
      fs.writeFileSync(path.join(cpu, 'cpu.max'), `${quota === null ? 'max' : quota} ${PERIOD}`);
      return;
    }
    // v1: memory+swap may never be below memory alone (the kernel refuses it), so memory goes first
    // when the limit falls and memory+swap first when it rises (or is lifted).
    const bytes = limits.memoryBytes === null ? '-1' : String(limits.memoryBytes);
    const mem = path.join(memory, 'memory.limit_in_bytes');
    const memsw = path.join(memory, 'memory.memsw.limit_in_bytes');
    if (limits.memoryBytes === null || limits.memoryBytes > Number(fs.readFileSync(mem, 'utf8'))) {
      tryWrite(memsw, bytes);
      fs.writeFileSync(mem, bytes);
    } else {
      fs.writeFileSync(mem, bytes);
      tryWrite(memsw, bytes);
    }
    fs.writeFileSync(path.join(cpu, 'cpu.cfs_quota_us'), quota === null ? '-1' : String(quota));
  }

  /** True when the kernel killed a process of this cgroup for going past memory.max. */
  oomKilled(): boolean {
    return this.dirs.memory !== undefined && cgroupOomKilled(this.dirs.memory);
  }

  /** Remove its directories once its guest host has ended (or never started): what is left in them is killed first. */
  remove(): void {
    for (const d of this.all) {
      killLeftIn(d);
      removeCgroupDir(d);
    }
  }
}

/** mkdir `<hierarchy>/<parent>/<name>`; the guest's directory itself must be new. */
function mkGuestDir(hierarchy: string, name: string, made: string[], v2: boolean): string {
  const parent = path.join(hierarchy, cgroupParent());
  if (!fs.existsSync(parent)) {
    fs.mkdirSync(parent);
    made.push(parent);
  }
  if (v2) {
    // Controllers must be enabled for the children of every level we create.
    for (const d of [hierarchy, parent]) {
      tryWrite(path.join(d, 'cgroup.subtree_control'), '+cpu +memory');
      tryWrite(path.join(d, 'cgroup.subtree_control'), '+pids');
    }
  }
  const dir = path.join(parent, name);
  fs.mkdirSync(dir);
  made.push(dir);
  return dir;
}

/** True when the kernel OOM-killed a process of the cgroup directory `dir` (v2 or v1 memory). */
export function cgroupOomKilled(dir: string): boolean {
  for (const file of ['memory.events', 'memory.oom_control']) {
    try {
      const m = /^oom_kill (\d+)/m.exec(fs.readFileSync(path.join(dir, file), 'utf8'));
      if (m !== null) return Number(m[1]) > 0;
    } catch {
      // not this version's file, or no such counter on this kernel: the exit is reported as it is
    }
  }
  return false;
}

/**
 * Kill every process still in a guest's cgroup directory, once its guest host has ended or failed to
 * start: left over by definition (launcher.ts says what was seen), and a cgroup with a process in it
 * cannot be removed. cgroup.kill where the kernel has it (v2, 5.14+), else each pid it lists (v1).
 */
export function killLeftIn(dir: string): void {
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
    return;
  } catch {
    // v1, a kernel before 5.14, or gone
  }
  let procs: string;
  try {
    procs = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8');
  } catch {
    return; // gone
  }
  for (const p of procs.split('\n')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** rmdir a cgroup directory (never a recursive delete), retrying while its last task leaves. */
export function removeCgroupDir(dir: string): void {
  for (let i = 0; i < 20; i++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTEMPTY') return; // gone, or a parent that still has guests
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
    }
  }
}

/**
 * Which cgroup controllers this process can really use: each is tried by making a test cgroup and
 * writing a limit to it (existing files alone prove nothing: a read-only mount, a delegated
 * subtree, a container).
 */
export function probeCgroups(): { version: 'v1' | 'v2' | null; controllers: string[]; reason: string } {
  const name = `probe-${process.pid}-${Date.now()}`;
  const tried: string[] = [];
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const made: string[] = [];
    const controllers: string[] = [];
    try {
      const dir = mkGuestDir('/sys/fs/cgroup', name, made, true);
      if (tryWrite(path.join(dir, 'memory.max'), String(2 ** 30))) controllers.push('memory');
      if (tryWrite(path.join(dir, 'cpu.max'), `${PERIOD} ${PERIOD}`)) controllers.push('cpu');
      if (tryWrite(path.join(dir, 'pids.max'), '100')) controllers.push('pids');
    } catch (err) {
      tried.push(`cgroup v2: ${(err as Error).message}`);
    } finally {
      for (const d of made.reverse()) removeCgroupDir(d);
    }
    return { version: controllers.length > 0 ? 'v2' : null, controllers, reason: tried.join('; ') || 'no cgroup v2 controller accepted a limit' };
  }
  const controllers: string[] = [];
  for (const [controller, file, value] of [
    ['memory', 'memory.limit_in_bytes', String(2 ** 30)],
    ['cpu', 'cpu.cfs_quota_us', String(PERIOD)],
    ['pids', 'pids.max', '100'],
  ] as const) {
    const made: string[] = [];
    try {
      const dir = mkGuestDir(path.join(V1_ROOT, controller), name, made, false);
      fs.writeFileSync(path.join(dir, file), value);
      controllers.push(controller);
    } catch (err) {
      tried.push(`cgroup v1 ${controller}: ${(err as Error).message}`);
    } finally {
      for (const d of made.reverse()) removeCgroupDir(d);
    }
  }
  return { version: controllers.length > 0 ? 'v1' : null, controllers, reason: tried.join('; ') };
}

/** Remove guest cgroups (`g-<ms>-<hex>`) older than a minute that no process uses, in every hierarchy. */
export function sweepStaleCgroups(now = Date.now(), keep: (name: string) => boolean = () => false): number {
  let removed = 0;
  const roots = [path.join(V1_ROOT, 'memory'), path.join(V1_ROOT, 'cpu'), path.join(V1_ROOT, 'pids'), cgroup2Root()].filter((r): r is string => r !== null);
  for (const root of new Set(roots)) {
    const parent = path.join(root, cgroupParent());
    let names: string[];
    try {
      names = fs.readdirSync(parent);
    } catch {
      continue; // no guests in this hierarchy yet
    }
    for (const name of names) {
      const m = /^g-(\d+)-[0-9a-f]+$/.exec(name);
      if (m === null || now - Number(m[1]) <= 60_000 || keep(name)) continue;
      try {
        fs.rmdirSync(path.join(parent, name)); // refused while a process is in it
        removed++;
      } catch {
        // still in use
      }
    }
  }
  return removed;
}

function tryWrite(file: string, value: string): boolean {
  try {
    fs.writeFileSync(file, value);
    return true;
  } catch {
    return false; // best effort: not every kernel has every knob; callers that need it check
  }
}
