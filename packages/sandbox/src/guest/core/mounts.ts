import path from 'node:path';
import { usageOf } from '../../common/usage.js';
import { ConfigDir, HostDir, type GuestDir } from './dir.js';
import { Ledger } from './ledger.js';

/**
 * The guest's filesystem from its boot options, the same for preview1 and components: each
 * granted directory opened once, config files grouped by guest directory into read-only virtual
 * directories, and one Ledger across the writable directories that starts at what they hold.
 */
export function openMounts(
  dirs: { host: string; guest: string; readonly: boolean }[],
  config: { guest: string; host: string }[],
  disk: number | undefined,
): { preopens: [string, GuestDir][]; ledger: Ledger } {
  const used = dirs.filter((d) => !d.readonly).reduce((s, d) => s + usageOf(d.host), 0);
  const ledger = new Ledger(used, disk ?? Infinity);
  const preopens: [string, GuestDir][] = dirs.map((d) => [d.guest, HostDir.openRoot(d.host, d.readonly, ledger)]);
  const byDir = new Map<string, Map<string, string>>();
  for (const c of config) {
    const dir = path.posix.dirname(c.guest);
    const files = byDir.get(dir) ?? new Map<string, string>();
    files.set(path.posix.basename(c.guest), c.host);
    byDir.set(dir, files);
  }
  for (const [dir, files] of byDir) preopens.push([dir, new ConfigDir(files, ledger)]);
  return { preopens, ledger };
}
