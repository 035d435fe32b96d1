// The sandbox's public surface: what the node agent, the tests and the benchmarks use, by name.
export type { DirMount, GuestExit, GuestHandle, GuestIsolation, GuestOptions, GuestUsage, OutputTarget } from './types.js';
export { spawnGuest, attachGuest } from './host/spawn.js';
/** Shared guest hosts: the Node.js with JSPI they run on (null: shared guests run as process guests), and how many guests one carries. */
export { prewarmSandbox } from './host/prewarm.js';
export { jspiNode, MAX_SPARE_HOSTS, prewarmJspiNode, SHARED_GUESTS_PER_HOST, stopSpareHosts, warmSharedHost } from './host/shared-host.js';
export { startWarmHost, stopWarmHosts, warmHostReady, warmPoolRefusal, warmRefusal } from './host/warm-pool.js';
export { readExitRecord } from './host/exit-record.js';
export { probeCapabilities } from './host/capabilities.js';
export { cpuSeconds, rssBytes } from './host/proc.js';
export { sweepStaleFirewalls, removeGuestFirewall, type FirewallRecord } from './host/firewall.js';
/** The wall itself, so a plain program can be run inside the same confinement as a guest host (tests, operators). */
export { forgetWallProbe, probeWall, wallArgs, wallCommand, GUEST_TASKS, type WallLimits } from './host/isolation.js';
export { namespacePorts, pastaArgs, pastaBinary, type NetnsMode, type NetworkPorts } from './host/netns.js';
export { seccompProgram } from './host/seccomp.js';
/** The one write helper and the one disk-use rule, shared with the node agent. */
export { writeAll, writeFileAtomic, restorePrevious, appendWhole, truncateBack, fsyncDir } from './common/durable-file.js';
export { usageOf, usageOfAsync, ENTRY_BYTES } from './common/usage.js';
