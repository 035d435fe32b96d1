import type { Grants, NetworkAccess } from '@lowcloud/api';
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
  /** The network grant with its connect targets parsed (by the host, once). */
  network: NetworkAccess;
  stdin: boolean;
  stdout: OutputTarget;
  stderr: OutputTarget;
  /** Agent mode: exit record goes to runDir/exit.json. */
  runDir: string | null;
  detached: boolean;
  /** Inside the kernel wall: the files the host made for it are bind mounts (written in place, never renamed). */
  walled: boolean;
}

/** What the guest worker reports when the guest ends. */
export type WorkerResult = { kind: 'exit'; code: number } | { kind: 'trap'; message: string } | { kind: 'violation'; grant: 'disk' | 'memory'; detail: string };
