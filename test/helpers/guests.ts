import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './cli.js';

/** Path of a committed preview1 test guest (test/fixtures/guests/<name>.wasm). */
export const guest = (name: string) => path.join(repoRoot, 'test/fixtures/guests', `${name}.wasm`);

/** Wait until `check` is true, polling; fails after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** True while the process runs; a zombie (exited, not yet reaped) counts as gone. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
