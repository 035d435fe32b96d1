import type { GuestExit } from '@lowcloud/api';
import { pagesFor } from '../../wasm/module.js';
import { treeRssBytes } from '../proc.js';
import type { GrantLayers, GrantModule } from './grant.js';

const MiB = 2 ** 20;

/**
 * The guest host process is a whole Node.js + V8 (~40 MiB resident before the guest allocates).
 * The memory grant caps the guest's linear memory exactly; the kernel layer and the watchdog cap
 * the whole process at grant + this overhead, so the runtime itself can live.
 */
export const HOST_OVERHEAD_BYTES = 96 * MiB;

/** Every limit one memory grant becomes, derived here and nowhere else. */
export interface MemoryLimits {
  /** Linear memory maximum in wasm pages (admission rewrites the module's maximum to it). */
  pages: number;
  /** The whole guest host process (cgroup memory limit or RSS watchdog): grant + host overhead. */
  processBytes: number | undefined;
  /** V8 heap of the guest's worker thread (its JS glue, e.g. a component's bindings). */
  workerHeapMb: number | null;
  /** V8 heap of the guest host's main thread (`--max-old-space-size`), grant or not. */
  hostHeapMb: number;
}

export function memoryLimits(grant: number | undefined): MemoryLimits {
  if (grant === undefined) return { pages: 65536, processBytes: undefined, workerHeapMb: null, hostHeapMb: 64 }; // 65536 pages: the wasm32 maximum, nothing rewritten
  return { pages: pagesFor(grant), processBytes: grant + HOST_OVERHEAD_BYTES, workerHeapMb: Math.max(16, Math.floor(grant / MiB / 4)), hostHeapMb: 64 };
}

interface MemoryRecord {
  /** The kernel memory limit (bytes), when a memory cgroup enforces the grant. */
  cgroupBytes?: number;
  /** The RSS watchdog's limit, when no cgroup does. */
  watchdogBytes?: number;
}

export const memory: GrantModule<MemoryRecord> = {
  name: 'memory',
  cgroupLimits: (o) => (o.grants.memory === undefined ? {} : { memoryBytes: memoryLimits(o.grants.memory).processBytes }),
  async setUp({ options, cgroup }) {
    const grant = options.grants.memory;
    const report = memoryReport(grant, cgroup?.dirs.memory === undefined ? null : cgroup.version);
    if (grant === undefined) return layers({}, report);
    const limit = memoryLimits(grant).processBytes as number;
    return layers(cgroup?.dirs.memory !== undefined ? { cgroupBytes: limit } : { watchdogBytes: limit }, report);
  },
  reattach: (record) => layers(record ?? {}, []),
};

/**
 * What the memory layer reports for a grant: by a memory cgroup of this version, or by the RSS
 * watchdog where there is none (null). Also what a warm host taken for another grant says
 * (shared-host.ts `claimShared`).
 */
export function memoryReport(grant: number | undefined, cgroupVersion: 'v1' | 'v2' | null): GrantLayers['report'] {
  if (grant === undefined) return [{ mechanism: 'not limited (no memory grant)', level: 'advisory' }];
  const limit = memoryLimits(grant).processBytes as number;
  const runtime = [
    { mechanism: `linear memory maximum rewritten to ${grant} bytes (memory.grow fails past it)`, level: 'runtime' as const },
    { mechanism: 'V8 heap capped (worker resourceLimits, --max-old-space-size)', level: 'runtime' as const },
  ];
  if (cgroupVersion !== null) return [{ mechanism: `cgroup ${cgroupVersion} memory limit ${limit} bytes (grant + host overhead)`, level: 'kernel' }, ...runtime];
  return [...runtime, { mechanism: `RSS watchdog kills past ${limit} bytes (grant + host overhead)`, level: 'runtime' }];
}

/**
 * A memory layer's record given another kernel limit (a warm host taken by its guest:
 * shared-host.ts `claim`), so that a violation, and an agent that re-attaches, name that limit; null
 * lifts it.
 */
export function setRecordedCgroupLimit(record: object | null, bytes: number | null): void {
  const r = record as MemoryRecord | null;
  if (r === null) return;
  if (bytes === null) delete r.cgroupBytes;
  else r.cgroupBytes = bytes;
}

function layers(record: MemoryRecord, report: GrantLayers['report']): GrantLayers {
  let timer: NodeJS.Timeout | null = null;
  let seen: GuestExit | null = null;
  return {
    report,
    record,
    watch(pid, violated) {
      const limit = record.watchdogBytes;
      if (limit === undefined) return;
      timer = setInterval(() => {
        // Every process of the guest host: a child's memory is the grant's too.
        const rss = treeRssBytes(pid);
        if (rss === null || rss <= limit) return;
        seen = { kind: 'violation', grant: 'memory', detail: `resident memory ${rss} bytes passed ${limit}` };
        violated(seen);
      }, 250);
      timer.unref();
    },
    unwatch(why) {
      // Stopping on request: a guest that passes its grant meanwhile is still a violation.
      if (why !== 'stopping' && timer !== null) clearInterval(timer);
    },
    violation(end) {
      if (seen !== null) return seen;
      if (!end.oom || record.cgroupBytes === undefined) return null;
      return { kind: 'violation', grant: 'memory', detail: `killed by the kernel: past the cgroup memory limit of ${record.cgroupBytes} bytes` };
    },
  };
}
