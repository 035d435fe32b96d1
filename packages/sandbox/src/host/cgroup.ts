import fs from 'node:fs';
import path from 'node:path';

/**
 * A per-guest cgroup (v1: one directory per controller; v2: one directory). Created before the
 * guest runs, removed after it is gone.
 */
export class GuestCgroup {
  private constructor(
    readonly version: 'v1' | 'v2',
    readonly dirs: { memory?: string; cpu?: string },
  ) {}

  static create(version: 'v1' | 'v2', name: string, limits: { memoryBytes?: number; cpuCores?: number }): GuestCgroup {
    const period = 100_000;
    if (version === 'v2') {
      const parent = '/sys/fs/cgroup/lowcloud';
      fs.mkdirSync(parent, { recursive: true });
      // Controllers must be enabled for children of every level we create.
      tryWrite('/sys/fs/cgroup/cgroup.subtree_control', '+cpu +memory');
      tryWrite(path.join(parent, 'cgroup.subtree_control'), '+cpu +memory');
      const dir = path.join(parent, name);
      fs.mkdirSync(dir, { recursive: true });
      if (limits.memoryBytes !== undefined) {
        fs.writeFileSync(path.join(dir, 'memory.max'), String(limits.memoryBytes));
        tryWrite(path.join(dir, 'memory.swap.max'), '0');
      }
      if (limits.cpuCores !== undefined) fs.writeFileSync(path.join(dir, 'cpu.max'), `${Math.round(limits.cpuCores * period)} ${period}`);
      return new GuestCgroup('v2', { memory: dir, cpu: dir });
    }
    const dirs: { memory?: string; cpu?: string } = {};
    if (limits.memoryBytes !== undefined) {
      dirs.memory = path.join('/sys/fs/cgroup/memory/lowcloud', name);
      fs.mkdirSync(dirs.memory, { recursive: true });
      fs.writeFileSync(path.join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
      tryWrite(path.join(dirs.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
    }
    if (limits.cpuCores !== undefined) {
      dirs.cpu = path.join('/sys/fs/cgroup/cpu/lowcloud', name);
      fs.mkdirSync(dirs.cpu, { recursive: true });
      fs.writeFileSync(path.join(dirs.cpu, 'cpu.cfs_period_us'), String(period));
      fs.writeFileSync(path.join(dirs.cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpuCores * period)));
    }
    return new GuestCgroup('v1', dirs);
  }

  add(pid: number): void {
    for (const d of new Set([this.dirs.memory, this.dirs.cpu])) if (d !== undefined) fs.writeFileSync(path.join(d, 'cgroup.procs'), String(pid));
  }

  /** True when the kernel killed a process of this cgroup for going past memory.max. */
  oomKilled(): boolean {
    const d = this.dirs.memory;
    if (d === undefined) return false;
    const file = this.version === 'v2' ? path.join(d, 'memory.events') : path.join(d, 'memory.oom_control');
    try {
      const m = /oom_kill (\d+)/.exec(fs.readFileSync(file, 'utf8'));
      return m !== null && Number(m[1]) > 0;
    } catch {
      return false;
    }
  }

  remove(): void {
    for (const d of new Set([this.dirs.memory, this.dirs.cpu])) {
      if (d === undefined) continue;
      for (let i = 0; i < 20; i++) {
        try {
          fs.rmdirSync(d);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
        }
      }
    }
  }
}

function tryWrite(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch {
    // best effort: not every kernel has every knob
  }
}
