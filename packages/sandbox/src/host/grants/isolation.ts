import { isolationReport, probeWall } from '../isolation.js';
import { gpuDeviceNodes } from './gpu.js';
import type { GrantModule } from './grant.js';

/**
 * The wall around the guest host (host/isolation.ts): not a grant of the guest's, but set up,
 * reported and released like one. It decides the uid the guest host runs as.
 */
export const isolation: GrantModule<null> = {
  name: 'isolation',
  async setUp({ options, wall: allowed }) {
    const { wall, reason } = allowed ? probeWall() : { wall: null, reason: 'turned off for this guest' };
    const mine = process.getuid?.() ?? 0;
    // The agent's per-process uid as root; otherwise the caller's.
    const uid = wall?.mode === 'root' && options.uid !== undefined ? options.uid : mine;
    // The GPU's device nodes exist in the guest host's view only with a gpu grant.
    const devices = options.grants.gpu === undefined ? [] : gpuDeviceNodes();
    return { report: isolationReport(wall, reason, uid), record: null, wall: { wall, uid, devices } };
  },
  reattach: () => ({ report: [], record: null }),
};
