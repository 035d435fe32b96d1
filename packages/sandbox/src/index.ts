export type {
  Capabilities,
  DirMount,
  Enforcement,
  EnforcementLevel,
  EnforcementReport,
  GuestExit,
  GuestHandle,
  GuestOptions,
  GuestUsage,
  OutputTarget,
} from './types.js';
export { spawnGuest, attachGuest, HOST_OVERHEAD_BYTES } from './host/spawn.js';
export { readExitRecord } from './host/exit-record.js';
/** The wall itself, so a plain program can be run inside the same confinement as a guest host (tests, operators). */
export { probeWall, wallArgs, codeView, DYNAMIC_UID_MIN, DYNAMIC_UID_MAX, type Wall, type WallSpec } from './host/isolation.js';
export { seccompProgram, DENIED_SYSCALLS } from './host/seccomp.js';
export { probeCapabilities } from './host/capabilities.js';
export { cpuSeconds, rssBytes } from './host/proc.js';
export { sweepStaleFirewalls, removeGuestFirewall, type FirewallRecord } from './host/firewall.js';
export { admit } from './host/admission.js';
export { binaryKind, rewriteMemoryMax } from './wasm/module.js';
export { NotWasmError, UnsupportedWorldError } from './errors.js';
export { writeAll, writeFileAtomic, restorePrevious, appendWhole, truncateBack, fsyncDir } from './common/durable-file.js';
export { usageOf, usageOfAsync, ENTRY_BYTES } from './common/usage.js';
