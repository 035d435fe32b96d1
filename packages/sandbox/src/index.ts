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
