import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { wallArgs } from '../isolation.js';
import { gpuDeviceNodes } from './gpu.js';
import type { SetUpContext } from './grant.js';
import { isolation } from './isolation.js';

const context = (gpu: boolean) =>
  ({ options: { grants: { network: { listen: [], connect: [] }, ...(gpu ? { gpu: { memory: 2 ** 20 } } : {}) } }, kind: 'module', network: { listen: [], connect: [], udp: false }, wall: false }) as unknown as SetUpContext;

describe('the GPU device nodes in the wall are a function of the gpu grant', () => {
  it('the isolation module hands the wall the GPU nodes of this machine with the grant, none without', async () => {
    const withGrant = await isolation.setUp(context(true));
    const without = await isolation.setUp(context(false));
    expect(without.wall?.devices).toEqual([]);
    expect(withGrant.wall?.devices).toEqual(gpuDeviceNodes());
    // What this machine has: DRM (/dev/dri) and NVIDIA's nodes, read here independently.
    const dev = fs.readdirSync('/dev');
    expect(gpuDeviceNodes().sort()).toEqual([...(dev.includes('dri') ? ['/dev/dri'] : []), ...dev.filter((f) => f.startsWith('nvidia')).map((f) => `/dev/${f}`)].sort());
  });

  it('wallArgs binds each given device node into the minimal /dev, after it is made', () => {
    const w = { mode: 'userns', bwrap: '/usr/bin/bwrap', setpriv: '/usr/bin/setpriv', prlimit: '/usr/bin/prlimit', unshare: '/usr/bin/unshare', proven: { capEffZero: true, noNewPrivs: true, seccomp: true, viewHidden: true, uidChanged: false } } as const;
    const spec = { uid: null, ro: [], rw: [], seccompFd: 3, infoFd: null, dieWithParent: true, command: ['true'] };
    const a = wallArgs(w, { ...spec, devices: ['/dev/dri', '/dev/nvidia0'] });
    const dev = a.indexOf('--dev');
    const binds = a.flatMap((x, i) => (x === '--dev-bind-try' ? [[a[i + 1], a[i + 2], i]] : []));
    expect(binds.map(([p, q]) => [p, q])).toEqual([
      ['/dev/dri', '/dev/dri'],
      ['/dev/nvidia0', '/dev/nvidia0'],
    ]);
    expect(binds.every(([, , i]) => (i as number) > dev)).toBe(true);
    expect(wallArgs(w, spec)).not.toContain('--dev-bind-try');
  });
});
