import fs from 'node:fs';
import type { Capabilities } from '../types.js';
import { diskImageTools } from './disk-image.js';
import { cgroup2Root, nftBinary } from './firewall.js';

let cached: Capabilities | null = null;

/** What this machine lets the sandbox use for the kernel layer of each grant. Probed once. */
export function probeCapabilitiesSync(): Capabilities {
  if (cached !== null) return cached;
  const root = process.getuid?.() === 0;
  let cgroup: Capabilities['cgroup'] = null;
  const controllers: string[] = [];
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    cgroup = 'v2';
    controllers.push(...fs.readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').trim().split(/\s+/).filter((c) => c === 'cpu' || c === 'memory'));
  } else if (fs.existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') || fs.existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')) {
    cgroup = 'v1';
    if (fs.existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes')) controllers.push('memory');
    if (fs.existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')) controllers.push('cpu');
  }
  const writable = root && cgroup !== null && canWrite(cgroup === 'v2' ? '/sys/fs/cgroup' : '/sys/fs/cgroup/memory');
  cached = {
    root,
    cgroup: writable ? cgroup : null,
    controllers: writable ? controllers : [],
    netns: root && fs.existsSync('/proc/self/ns/net'),
    nftables: root && nftBinary() !== null && canWrite(cgroup2Root() ?? '/nonexistent'),
    diskImages: root && diskImageTools(),
    landlock: null,
  };
  return cached;
}

export async function probeCapabilities(): Promise<Capabilities> {
  return probeCapabilitiesSync();
}

function canWrite(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
