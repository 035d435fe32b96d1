import type { GuestDir } from '../core/dir.js';
import { argsEnvImports } from './args-env.js';
import { clockImports } from './clock.js';
import { Preview1Context, type Preview1Io } from './context.js';
import { fdImports } from './fd.js';
import { GuestMemory } from './memory.js';
import { pathImports } from './path.js';
import { pollImports } from './poll.js';
import { procImports } from './proc.js';
import { randomImports } from './random.js';
import { sockImports } from './sock.js';

/**
 * A WASI preview1 (`wasi_snapshot_preview1`) host over the sandbox's enforcement core (guest/core:
 * the path walk, the quota ledger), one file per interface. Written here rather than wrapping the
 * module with jco's preview1 adapter: the adapter traps on modules that do not export
 * `cabi_realloc` (Debian clang's output) and collapses exit codes to 0/1.
 */
export interface Preview1Options extends Preview1Io {
  args: string[];
  env: Record<string, string>;
  /** Preopened directories, as [guest name, directory], given descriptors 3, 4, ... in order. */
  preopens: [string, GuestDir][];
  /** A shared guest host with JSPI: how a clock wait suspends this guest alone (poll.ts). */
  wait?: (ms: number) => Promise<void>;
  /** A process guest's thread: how a clock wait blocks it (poll.ts); default: without interruption. */
  sleep?: (ms: number) => void;
}

export function preview1Imports(opts: Preview1Options): { imports: Record<string, WebAssembly.ImportValue>; memory: GuestMemory } {
  const mem = new GuestMemory();
  const ctx = new Preview1Context(mem, opts);
  for (const [guest, dir] of opts.preopens) ctx.add({ type: 'dir', dir, preopen: guest, listing: null });
  const wasi = {
    ...argsEnvImports(ctx, opts.args, opts.env),
    ...clockImports(ctx),
    ...fdImports(ctx),
    ...pathImports(ctx),
    ...pollImports(ctx, opts.wait, opts.sleep),
    ...procImports(),
    ...randomImports(ctx),
    ...sockImports(ctx),
  };
  return { imports: wasi as unknown as Record<string, WebAssembly.ImportValue>, memory: mem };
}
