import fs from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { DiskQuota, usageOf, type Mount } from './core/fs.js';
import type { GuestBootOptions, WorkerResult } from './options.js';
import { openOutput } from './output.js';
import { GuestExit, preview1Imports } from './preview1/imports.js';

/**
 * Runs the guest. This thread blocks inside the guest for its whole life; the main thread of the
 * guest host process stays free to notice its parent dying, signals and stop requests.
 */
const opts = workerData as GuestBootOptions;
const report = (r: WorkerResult) => parentPort?.postMessage(r);

function mounts(): Mount[] {
  const out: Mount[] = opts.dirs.map((d) => ({ guest: d.guest, host: d.host, readonly: d.readonly }));
  // Config files are grouped by guest directory into read-only mounts that hold only those files.
  const byDir = new Map<string, Map<string, string>>();
  for (const c of opts.config) {
    const dir = path.posix.dirname(c.guest);
    const files = byDir.get(dir) ?? new Map<string, string>();
    files.set(path.posix.basename(c.guest), c.host);
    byDir.set(dir, files);
  }
  for (const [dir, files] of byDir) out.push({ guest: dir, host: files, readonly: true });
  return out;
}

function stdinReader(): ((b: Uint8Array) => number) | null {
  if (!opts.stdin) return null;
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

async function main(): Promise<void> {
  if (opts.kind === 'component') {
    try {
      // Loaded only for components: jco's preview2-shim costs ~150 ms of CPU to import, which every
      // preview1 guest start would otherwise pay.
      const { runComponent } = await import('./component/run.js');
      report({ kind: 'exit', code: await runComponent(opts.modulePath, { argv: opts.argv, env: opts.env, network: opts.grants.network, config: opts.config, stdout: openOutput(opts.stdout, 1), stderr: openOutput(opts.stderr, 2) }) });
    } catch (err) {
      report({ kind: 'trap', message: err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err) });
    }
    return;
  }
  const writable = opts.dirs.filter((d) => !d.readonly);
  const quota = opts.grants.disk === undefined ? null : new DiskQuota(writable.reduce((s, d) => s + usageOf(d.host), 0), opts.grants.disk);
  const { imports, memory } = preview1Imports({
    args: opts.argv,
    env: opts.env,
    mounts: mounts(),
    quota,
    stdout: openOutput(opts.stdout, 1),
    stderr: openOutput(opts.stderr, 2),
    stdin: stdinReader(),
  });
  const module = new WebAssembly.Module(fs.readFileSync(opts.modulePath));
  const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: imports });
  const exported = instance.exports as { memory?: WebAssembly.Memory; _start?: () => void };
  if (!(exported.memory instanceof WebAssembly.Memory) || typeof exported._start !== 'function') {
    report({ kind: 'trap', message: 'the module is not a WASI command: it must export memory and _start' });
  } else {
    memory.memory = exported.memory;
    try {
      exported._start();
      report({ kind: 'exit', code: 0 });
    } catch (err) {
      if (err instanceof GuestExit) report({ kind: 'exit', code: err.code });
      else report({ kind: 'trap', message: err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err) });
    }
  }
}

main().catch((err: unknown) => report({ kind: 'trap', message: err instanceof Error ? err.message : String(err) }));
