import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GrantUnavailableError } from '../../errors.js';
import type { GrantModule } from './grant.js';

/** Longest one GPU submission may run when the grant does not say (seconds). */
export const GPU_SUBMIT_SECONDS = 10;

/**
 * The gpu grant: WebGPU compute through `lowcloud:gpu` (include/lowcloud/gpu.h). The guest host
 * enforces it (guest/gpu): one Dawn device per guest, on a thread of its own, gone with the guest
 * host; buffers past the grant's memory refused inside the guest; a submission past the time
 * budget ends the guest. Here: whether Dawn finds an adapter on this machine (probed once per
 * process, in a child process, only when a guest with the grant starts: other guests pay nothing),
 * the report lines naming it, and the GPU device nodes the wall binds (grants/isolation.ts).
 */
export const gpu: GrantModule<null> = {
  name: 'gpu',
  async setUp({ options }) {
    const g = options.grants.gpu;
    if (g === undefined) return { report: [], record: null };
    const probe = await probeAdapter();
    if ('unavailable' in probe) throw new GrantUnavailableError('gpu', `${probe.unavailable}; the guest was not started`);
    const seconds = g.submitSeconds ?? GPU_SUBMIT_SECONDS;
    return {
      record: null,
      report: [
        { mechanism: `GPU memory budget ${g.memory} bytes (sum of live buffers; past it buffer creation fails in the guest)`, level: 'runtime' },
        { mechanism: `time budget ${seconds} s per submission (past it the guest is ended)`, level: 'runtime' },
        { mechanism: `one device of its own, destroyed with its guest host; adapter: ${probe.adapter}`, level: 'runtime' },
      ],
    };
  },
  reattach: () => ({ report: [], record: null }),
};

/** Device nodes of GPUs on this machine (DRM render nodes, NVIDIA's), bound into a gpu guest's wall. */
export function gpuDeviceNodes(): string[] {
  const nodes = fs.existsSync('/dev/dri') ? ['/dev/dri'] : [];
  try {
    for (const f of fs.readdirSync('/dev')) if (f.startsWith('nvidia')) nodes.push(`/dev/${f}`);
  } catch {
    // no /dev to read: nothing to bind
  }
  return nodes;
}

type Probe = { adapter: string } | { unavailable: string };
let probed: Promise<Probe> | null = null;
let answer: Probe | null = null;

/** Why a gpu grant would be refused here, as far as is known without loading Dawn; null: no reason known. */
export function gpuUnavailable(): string | null {
  if (answer !== null) return 'unavailable' in answer ? answer.unavailable : null;
  try {
    import.meta.resolve('webgpu');
    return null;
  } catch {
    return 'the webgpu package (Dawn) is not installed (an optional dependency: npm install webgpu)';
  }
}

/** Whether a guest would get an adapter, and which: asked once per process. */
export function probeAdapter(): Promise<Probe> {
  probed ??= new Promise<Probe>((resolve) => {
    const script = fileURLToPath(new URL('../../common/gpu-probe.js', import.meta.url));
    execFile(process.execPath, [script], { env: { ...process.env, EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' }, timeout: 60_000 }, (err, stdout, stderr) => {
      try {
        resolve((answer = JSON.parse(stdout.trim().split('\n').pop() ?? '') as Probe));
      } catch {
        resolve((answer = { unavailable: `the GPU probe failed: ${err?.message ?? ''} ${stderr.trim().split('\n').slice(-3).join(' ')}`.trim() }));
      }
    });
  });
  return probed;
}
