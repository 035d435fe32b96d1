import path from 'node:path';
import { usageOf } from '../../common/usage.js';
import type { BootConfigFile } from '../../common/protocol.js';
import { ConfigDir, HostDir, type GuestDir } from './dir.js';
import { Ledger } from './ledger.js';

/**
 * The guest's filesystem from its boot options, the same for preview1 and components: each
 * granted directory opened once, config files grouped by guest directory into read-only virtual
 * directories, and one Ledger across the writable directories that starts at what they hold.
 */
export function openMounts(
  dirs: { host: string; guest: string; readonly: boolean }[],
  config: BootConfigFile[],
  disk: number | undefined,
): { preopens: [string, GuestDir][]; ledger: Ledger } {
  const used = dirs.filter((d) => !d.readonly).reduce((s, d) => s + usageOf(d.host), 0);
  const ledger = new Ledger(used, disk ?? Infinity);
  const preopens: [string, GuestDir][] = dirs.map((d) => [d.guest, HostDir.openRoot(d.host, d.readonly, ledger)]);
  const byDir = new Map<string, Map<string, string | Uint8Array>>();
  for (const c of config) {
    const dir = path.posix.dirname(c.guest);
    const files = byDir.get(dir) ?? new Map<string, string | Uint8Array>();
    // A file given by content (an opened secret) is served from memory: it never touches a disk.
    files.set(path.posix.basename(c.guest), 'host' in c ? c.host : new Uint8Array(Buffer.from(c.content, 'base64')));
    byDir.set(dir, files);
  }
  for (const [dir, files] of byDir) preopens.push([dir, new ConfigDir(files, ledger)]);
  return { preopens, ledger };
}
