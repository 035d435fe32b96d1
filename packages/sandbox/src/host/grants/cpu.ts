import { CpuThrottle } from '../throttle.js';
import type { GrantLayers, GrantModule } from './grant.js';

interface CpuRecord {
  /** The SIGSTOP/SIGCONT duty cycle's share, when no cgroup holds the grant. */
  throttleCores?: number;
}

export const cpu: GrantModule<CpuRecord> = {
  name: 'cpu',
  cgroupLimits: (o) => (o.grants.cpu === undefined ? {} : { cpuCores: o.grants.cpu }),
  async setUp({ options, cgroup }) {
    const cores = options.grants.cpu;
    if (cores === undefined) return layers({}, [{ mechanism: 'not limited (no cpu grant)', level: 'advisory' }]);
    if (cgroup?.dirs.cpu !== undefined) return layers({}, [{ mechanism: `cgroup ${cgroup.version} CPU quota ${cores} cores`, level: 'kernel' }]);
    return layers({ throttleCores: cores }, [{ mechanism: `SIGSTOP/SIGCONT duty cycle at ${cores} cores`, level: 'runtime' }]);
  },
  reattach: (record) => layers(record ?? {}, []),
};

function layers(record: CpuRecord, report: GrantLayers['report']): GrantLayers {
  let throttle: CpuThrottle | null = null;
  return {
    report,
    record,
    watch(pid) {
      if (record.throttleCores !== undefined) throttle = new CpuThrottle(pid, record.throttleCores).start();
    },
    // Also when stopping: a guest held SIGSTOPped would not see its SIGTERM.
    unwatch: () => throttle?.stop(),
  };
}
