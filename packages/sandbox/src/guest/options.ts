import type { Grants } from '@lowcloud/api';
import type { OutputTarget } from '../types.js';

/** What the host hands the guest host process (as a 0600 JSON file, never through the guest's env). */
export interface GuestBootOptions {
  /** Admitted module bytes (memory maximum already rewritten), from the admission cache. */
  modulePath: string;
  kind: 'module' | 'component';
  argv: string[];
  env: Record<string, string>;
  dirs: { host: string; guest: string; readonly: boolean }[];
  config: { guest: string; host: string }[];
  grants: Grants;
  stdin: boolean;
  stdout: OutputTarget;
  stderr: OutputTarget;
  /** Agent mode: exit record goes to runDir/exit.json. */
  runDir: string | null;
  detached: boolean;
  /**
   * The cgroup v2 path (as in /proc/self/cgroup) the network kernel layer applies to: the guest
   * host waits until it is in it before it runs the guest. Null without that layer.
   */
  confine: string | null;
  /**
   * The nftables table of the network kernel layer: the guest host deletes it as it exits, so the
   * rules go with the guest even when the process that started it was killed.
   */
  firewall: { nft: string; table: string } | null;
}

/** What the guest worker reports when the guest ends. */
export type WorkerResult = { kind: 'exit'; code: number } | { kind: 'trap'; message: string } | { kind: 'violation'; grant: 'disk' | 'memory'; detail: string };
