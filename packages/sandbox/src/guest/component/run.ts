import { readFile } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NetworkAccess } from '@lowcloud/api';
import type { GuestDir } from '../core/dir.js';
import { GPU_INTERFACE } from '../../common/interfaces.js';
import { GuestExit } from '../exit.js';
import { type GpuCaller, GpuGrantMissing } from '../gpu/caller.js';
import { gpuComponentImports } from '../gpu/component.js';
import { compilePolicy } from '../net/policy.js';
import { componentImports } from './imports.js';

type Instantiate = (getCoreModule: (p: string) => Promise<WebAssembly.Module>, imports: Record<string, unknown>) => Promise<Record<string, { run?: () => void }>>;

/** Runs an admitted (transpiled) WASI 0.2 command component; resolves with its exit code. */
export async function runComponent(
  dir: string,
  opts: {
    argv: string[];
    env: Record<string, string>;
    network: NetworkAccess;
    preopens: [string, GuestDir][];
    stdout: (b: Uint8Array) => void;
    stderr: (b: Uint8Array) => void;
    /** With a gpu grant: the calls to the guest's GPU device thread (guest/gpu/caller.ts). */
    gpu: GpuCaller | null;
  },
): Promise<number> {
  // jco's generated bindings read process.env.JCO_DEBUG several times per call (process.env is a
  // slow host object: ~4 us per filesystem write measured). This thread only runs the guest, and
  // the guest never sees the host's environment: a plain copy makes that read cheap.
  process.env = { ...process.env };
  const policy = await compilePolicy(opts.network, async (host) => (await lookup(host, { all: true })).map((a) => a.address));
  // Said where the guest's own output goes (the terminal, or the process's log on an agent).
  for (const u of policy.unresolved) {
    opts.stderr(new TextEncoder().encode(`lowcloud: connect grant ${u.target}: the name did not resolve (${u.reason}); the guest cannot connect to it until it restarts\n`));
  }
  const { instantiate } = (await import(pathToFileURL(path.join(dir, 'guest.js')).href)) as { instantiate: Instantiate };
  const imports = componentImports({ ...opts, policy });
  // jco's bindings read an interface's imports only when the component imports it: without the
  // grant, that read is what refuses the component, before any of it runs.
  const gpu = opts.gpu;
  let gpuInterface: Record<string, unknown> | null = null;
  Object.defineProperty(imports, GPU_INTERFACE, {
    get: () => {
      if (gpu === null) throw new GpuGrantMissing('component', GPU_INTERFACE);
      // Once: jco checks resources with instanceof against the classes it was given.
      return (gpuInterface ??= gpuComponentImports(gpu));
    },
  });
  const root = await instantiate(async (p) => WebAssembly.compile(await readFile(path.join(dir, p))), imports);
  const run = Object.entries(root).find(([k]) => k === 'run' || k.startsWith('wasi:cli/run'))?.[1]?.run;
  if (run === undefined) throw new Error('the component does not export wasi:cli/run');
  try {
    run();
    return 0;
  } catch (err) {
    const exit = err instanceof GuestExit ? err : (err as { payload?: unknown } | null)?.payload;
    if (exit instanceof GuestExit) return exit.code;
    // wasi:cli/run returned err: the command failed.
    if ((err as Error | null)?.constructor?.name === 'ComponentError') return 1;
    throw err;
  }
}
