import type { Capabilities } from '../types.js';
import { probeCgroups } from './cgroup.js';
import { probeDiskImages, probeDiskImagesAsync } from './disk-image.js';
import { gpuUnavailable } from './grants/gpu.js';
import { probeNftables } from './firewall.js';
import { probeWall } from './isolation.js';

let cached: Capabilities | null = null;

/** The disk probe's answer once known (null: loop-mounted ext4 images work), and the asynchronous probe under way. */
let disk: { why: string | null } | undefined;
let diskAsking: Promise<void> | null = null;

/**
 * What this machine lets the sandbox use for the kernel layer of each grant and for the wall.
 * Each is probed by trying it (a limit written to a test cgroup, a ruleset
 * checked by nft against a test cgroup, the wall run around a tiny program, an ext4 image mounted),
 * never assumed from a file being there; once per process, except the wall, whose failure is
 * probed again.
 */
export function probeCapabilitiesSync(): Capabilities {
  if (cached !== null) return cached;
  const root = process.getuid?.() === 0;
  const unavailable: Record<string, string> = {};
  const cg = root ? probeCgroups() : { version: null, controllers: [], reason: 'not root' };
  if (cg.version === null) unavailable.cgroup = cg.reason;
  const nft = root ? probeNftables() : 'not root';
  if (nft !== null) unavailable.nftables = nft;
  cached = {
    root,
    cgroup: cg.version,
    controllers: cg.controllers,
    nftables: nft === null,
    diskImages: false,
    wall: null,
    unavailable,
  };
  // The wall: asked again on every read, so a failed probe (one that timed out under load at boot)
  // is retried (probeWall waits 30 s between tries) instead of deciding for the process's life.
  Object.defineProperty(cached, 'wall', { enumerable: true, get: () => probeWall().wall?.mode ?? null });
  Object.defineProperty(unavailable, 'wall', { enumerable: true, get: () => (probeWall().wall === null ? probeWall().reason : undefined) });
  // Mounting a test image takes ~0.1 s: probed when first asked (a guest with a disk image, status),
  // off the thread where the asker can wait (`probeCapabilities`, `prewarmDiskProbe`), here where it
  // cannot. Once: `null` is the probe's answer for "works", so `??=` would probe again on every read.
  const diskProbe = () => (disk ??= { why: root ? probeDiskImages() : 'not root' }).why;
  Object.defineProperty(cached, 'diskImages', { enumerable: true, get: () => diskProbe() === null });
  Object.defineProperty(unavailable, 'diskImages', { enumerable: true, get: () => diskProbe() ?? undefined });
  // The gpu grant: known without loading Dawn when the webgpu package is missing; otherwise once
  // the first guest with the grant has had the adapter probed (host/grants/gpu.ts).
  Object.defineProperty(unavailable, 'gpu', { enumerable: true, get: () => gpuUnavailable() ?? undefined });
  return cached;
}

/** The capabilities, the disk probe's tools run off the caller's thread where it is still to run. */
export async function probeCapabilities(): Promise<Capabilities> {
  await prewarmDiskProbe();
  return probeCapabilitiesSync();
}

/**
 * Probe disk images without holding this thread (an agent asks as it starts): its first `status`
 * then does not stop every connection for the ~0.1 s of mkfs and mount. Never rejects.
 */
export function prewarmDiskProbe(): Promise<void> {
  if (disk !== undefined) return Promise.resolve();
  if (process.getuid?.() !== 0) {
    disk = { why: 'not root' };
    return Promise.resolve();
  }
  return (diskAsking ??= probeDiskImagesAsync().then((why) => {
    disk ??= { why };
  }));
}
