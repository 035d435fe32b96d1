import fs from 'node:fs';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { openMounts } from './core/mounts.js';
import { sleepSync } from '../common/sleep.js';
import { GuestExit, GuestRestart } from './exit.js';
import { type GpuCaller, GpuGrantMissing, GpuTimeBudgetExceeded, gpuCaller } from './gpu/caller.js';
import { GPU_IMPORT_MODULE, gpuImports } from './gpu/imports.js';
import type { GuestBoot } from '../common/protocol.js';
import type { WorkerResult } from './worker-result.js';
import { openOutput } from './output.js';
import { preview1Imports } from './preview1/index.js';

/**
 * Runs the guest. This thread blocks inside the guest for its whole life; the main thread of the
 * guest host process stays free to notice its parent dying, signals and stop requests.
 */
/**
 * With a gpu grant: the channel to the guest's GPU device thread (guest/gpu, instance.ts). With
 * `control` (a preview1 guest without one): a cell the guest host sets to ask a restart in place.
 */
const opts = workerData as GuestBoot & { gpuPort: MessagePort | null; control: SharedArrayBuffer | null };
const control = opts.control === null ? null : new Int32Array(opts.control);
/** Compiled once per module file: a restart in place runs the same binary. */
const modules = new Map<string, WebAssembly.Module>();

/**
 * A clock wait that a restart in place interrupts: the guest's code unwinds from the call
 * (GuestRestart, passed through like an exit) and this thread waits for its next boot.
 */
function sleep(ms: number): void {
  if (control === null) return sleepSync(ms);
  if (ms > 0 && Atomics.load(control, 0) === 0) Atomics.wait(control, 0, 0, ms);
  if (Atomics.load(control, 0) !== 0) throw new GuestRestart();
}
const report = (r: WorkerResult) => parentPort?.postMessage(r);
/** The guest's calls to its GPU device thread, with a gpu grant: one implementation for both bindings. */
const gpu: GpuCaller | null = opts.gpuPort !== null && opts.gpu !== undefined ? gpuCaller(opts.gpuPort, opts.gpu) : null;
/** How the guest ended by a throw: its exit, a gpu violation, or a trap. */
function reportThrown(err: unknown): void {
  if (err instanceof GuestRestart) report({ kind: 'unwound' });
  else if (err instanceof GuestExit) report({ kind: 'exit', code: err.code });
  else if (err instanceof GpuTimeBudgetExceeded) report({ kind: 'violation', grant: 'gpu', detail: err.detail });
  else if (err instanceof GpuGrantMissing) report({ kind: 'trap', message: err.message });
  else report({ kind: 'trap', message: err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err) });
}

function stdinReader(boot: GuestBoot): ((b: Uint8Array) => number) | null {
  if (!boot.stdin) return null;
  return (b) => {
    try {
      return fs.readSync(0, b, 0, b.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
      if ((err as NodeJS.ErrnoException).code === 'EOF') return 0;
      throw err;
    }
  };
}

/** Run the guest of `opts`, then, each time the host restarts it in place, the next boot it sends. */
async function main(): Promise<void> {
  let boot: GuestBoot = opts;
  for (;;) {
    if (!(await run(boot))) return;
    const next = await new Promise<GuestBoot>((r) => parentPort?.once('message', r));
    if (control !== null) Atomics.store(control, 0, 0);
    boot = next;
  }
}

/** One guest from its boot; true when it unwound for a restart in place. */
async function run(opts: GuestBoot): Promise<boolean> {
  if (opts.kind === 'component') {
    try {
      // Loaded only for components: jco's preview2-shim costs ~150 ms of CPU to import, which every
      // preview1 guest start would otherwise pay.
      const { runComponent } = await import('./component/run.js');
      const { preopens } = openMounts(opts.dirs, opts.config, opts.disk ?? undefined);
      report({ kind: 'exit', code: await runComponent(opts.modulePath, { argv: opts.argv, env: opts.env, network: opts.network, preopens, stdout: openOutput(opts.stdout, 1), stderr: openOutput(opts.stderr, 2), gpu }) });
    } catch (err) {
      reportThrown(err);
    }
    return false;
  }
  const { imports, memory } = preview1Imports({
    args: opts.argv,
    env: opts.env,
    preopens: openMounts(opts.dirs, opts.config, opts.disk ?? undefined).preopens,
    stdout: openOutput(opts.stdout, 1),
    stderr: openOutput(opts.stderr, 2),
    stdin: stdinReader(opts),
    sleep,
  });
  let module = modules.get(opts.modulePath);
  if (module === undefined) modules.set(opts.modulePath, (module = new WebAssembly.Module(fs.readFileSync(opts.modulePath))));
  const wantsGpu = WebAssembly.Module.imports(module).some((i) => i.module === GPU_IMPORT_MODULE);
  if (wantsGpu && gpu === null) {
    reportThrown(new GpuGrantMissing('module', GPU_IMPORT_MODULE));
    return false;
  }
  const gpuModule: Record<string, WebAssembly.ModuleImports> = wantsGpu && gpu !== null ? { [GPU_IMPORT_MODULE]: gpuImports(memory, gpu) } : {};
  const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: imports, ...gpuModule });
  const exported = instance.exports as { memory?: WebAssembly.Memory; _start?: () => void };
  if (!(exported.memory instanceof WebAssembly.Memory) || typeof exported._start !== 'function') {
    report({ kind: 'trap', message: 'the module is not a WASI command: it must export memory and _start' });
  } else {
    memory.memory = exported.memory;
    try {
      exported._start();
      report({ kind: 'exit', code: 0 });
    } catch (err) {
      reportThrown(err);
      return err instanceof GuestRestart;
    }
  }
  return false;
}

main()
  .catch((err: unknown) => report({ kind: 'trap', message: err instanceof Error ? err.message : String(err) }))
  .finally(() => {
    // With a GPU device thread, this thread ends only with the process (guest/gpu/start.ts).
    if (opts.gpuPort !== null) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  });
