import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './cli.js';

/**
 * A copy of the built sandbox at `dir` (a package of its own inside the repository, so its
 * dependencies resolve through the repository's node_modules) whose guest host entry files
 * (`dist/guest/<entry>`) start with `prologue`: code an attacker runs inside the guest host before
 * lowcloud's own. Loaded and returned; the caller removes `dir`.
 */
export async function hostileSandbox(dir: string, prologue: string, entries: string[] = ['main.js']): Promise<typeof import('@lowcloud/sandbox')> {
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  const pkg = path.join(repoRoot, 'packages', 'sandbox');
  cpSync(path.join(pkg, 'dist'), path.join(dir, 'dist'), { recursive: true, filter: (f) => !f.endsWith('.map') });
  cpSync(path.join(pkg, 'package.json'), path.join(dir, 'package.json'));
  // No source maps: they would point at sources this copy does not have.
  for (const f of readdirSync(path.join(dir, 'dist'), { recursive: true, encoding: 'utf8' })) {
    const file = path.join(dir, 'dist', f);
    if (f.endsWith('.js')) writeFileSync(file, readFileSync(file, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, ''));
  }
  for (const entry of entries) {
    const file = path.join(dir, 'dist', 'guest', entry);
    writeFileSync(file, prologue + readFileSync(file, 'utf8'));
  }
  return (await import(path.join(dir, 'dist', 'index.js'))) as typeof import('@lowcloud/sandbox');
}
