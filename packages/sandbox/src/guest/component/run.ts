import { readFile } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NetworkAccess } from '@lowcloud/api';
import type { GuestDir } from '../core/dir.js';
import { GuestExit } from '../exit.js';
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
  const root = await instantiate(async (p) => WebAssembly.compile(await readFile(path.join(dir, p))), componentImports({ ...opts, policy }));
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
