import type { Enforcement } from '@lowcloud/api';
import { mountDiskImage, unmountDiskImage } from '../disk-image.js';
import type { GrantLayers, GrantModule } from './grant.js';

interface DiskRecord {
  /** Directories with the grant's ext4 image mounted over them (unmounted when the guest host ends). */
  mounts: string[];
}

/**
 * The disk grant: its runtime layer is the guest host's byte-charging filesystem (guest/core/);
 * its kernel layer an ext4 image loop-mounted over each writable directory that has one.
 */
export const disk: GrantModule<DiskRecord> = {
  name: 'disk',
  async setUp({ options, kernel, caps }) {
    const writable = options.dirs.filter((d) => d.readonly !== true);
    const grant = options.grants.disk;
    const mounts: string[] = [];
    const kernelLines: Enforcement[] = [];
    if (grant !== undefined) {
      for (const d of writable) {
        if (d.image === undefined || !kernel || !caps.diskImages) continue;
        try {
          kernelLines.push({ mechanism: await mountDiskImage(d.image, d.host, grant), level: 'kernel' });
          mounts.push(d.host);
        } catch (err) {
          kernelLines.push({ mechanism: `kernel layer not used: ${err instanceof Error ? err.message : String(err)}`, level: 'advisory' });
        }
      }
    }
    const runtime: Enforcement =
      grant === undefined
        ? { mechanism: writable.length > 0 ? 'writable directories without a byte quota' : 'no writable directory', level: writable.length > 0 ? 'advisory' : 'runtime' }
        : { mechanism: `byte quota ${grant} on writable directories: each file's size once plus 4096 per directory entry, charged before the bytes land (EDQUOT)`, level: 'runtime' };
    const report: Enforcement[] = [
      ...kernelLines.filter((e) => e.level === 'kernel'),
      runtime,
      { mechanism: 'preopened directories only, walked one component at a time; links followed only inside them, never to an absolute path or above them', level: 'runtime' },
      ...kernelLines.filter((e) => e.level !== 'kernel'),
    ];
    return layers({ mounts }, report);
  },
  reattach: (record) => layers(record ?? { mounts: [] }, []),
};

function layers(record: DiskRecord, report: Enforcement[]): GrantLayers {
  return {
    report,
    record,
    async release() {
      for (const dir of record.mounts) unmountDiskImage(dir);
    },
  };
}
