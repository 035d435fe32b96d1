import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The module graph of a lowcloud entry, read from its TypeScript sources: for tests that keep a
// start-up path narrow (a guest host's modules, a plan side worker's). Value imports only
// (`import type` is erased), static or by `import()`.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const apiRoot = path.join(root, 'packages/api');
const apiExports = (JSON.parse(fs.readFileSync(path.join(apiRoot, 'package.json'), 'utf8')) as { exports: Record<string, { default: string }> }).exports;

/** The source file of an `@lowcloud/api` entry (its package.json export, dist -> src). */
function apiSource(spec: string): string {
  const entry = apiExports[spec === '@lowcloud/api' ? '.' : `.${spec.slice('@lowcloud/api'.length)}`];
  if (entry === undefined) throw new Error(`${spec} is not an export of @lowcloud/api`);
  return path.join(apiRoot, entry.default.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts'));
}

export interface ModuleGraph {
  /** Every source file reached, relative to the repository root. */
  files: Set<string>;
  /** Each bare specifier imported (node: builtins aside), with the files (relative to the root) that import it. */
  bare: Map<string, string[]>;
}

/**
 * The graph from `entries`. `intoApi`: follow `@lowcloud/api` entries into the api's sources (they
 * are then files, not bare specifiers).
 */
export function moduleGraph(entries: string[], intoApi = false): ModuleGraph {
  const files = new Set<string>();
  const bare = new Map<string, string[]>();
  const walk = (file: string) => {
    const rel = path.relative(root, file);
    if (files.has(rel)) return;
    files.add(rel);
    const text = fs.readFileSync(file, 'utf8');
    const specs = [...text.matchAll(/^(?:import|export)\s+(?!type\b)(?:[^;]*?\sfrom\s+)?'([^']+)'/gm), ...text.matchAll(/\bimport\('([^']+)'\)/g)].map((m) => m[1] as string);
    for (const spec of specs) {
      if (spec.startsWith('.')) walk(path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (intoApi && spec.startsWith('@lowcloud/api')) walk(apiSource(spec));
      else if (!spec.startsWith('node:')) bare.set(spec, [...(bare.get(spec) ?? []), rel]);
    }
  };
  for (const e of entries) walk(e);
  return { files, bare };
}
