import { GRANTS, type Grant } from '@lowcloud/api';
import { cpu } from './cpu.js';
import { disk } from './disk.js';
import type { GrantModule } from './grant.js';
import { gpu } from './gpu.js';
import { isolation } from './isolation.js';
import { memory } from './memory.js';
import { network } from './network.js';

export type { GrantLayers, GrantModule, ProcessEvidence, SetUpContext } from './grant.js';
export { HOST_OVERHEAD_BYTES, memoryLimits } from './memory.js';
export { GPU_SUBMIT_SECONDS } from './gpu.js';

/** A module for every grant `api` defines (a new grant without one does not compile). */
const BY_GRANT: { readonly [G in Grant]: GrantModule } = { memory, cpu, disk, network, gpu } as { [G in Grant]: GrantModule };

/** Every layer of a guest host, in report order: the grants in `api`'s order, then the wall. */
export const LAYER_MODULES: readonly GrantModule[] = [...GRANTS.map((g) => BY_GRANT[g]), isolation as GrantModule];

/** The keys of an enforcement report, in order. */
export const REPORT_KEYS = LAYER_MODULES.map((m) => m.name);
