#!/usr/bin/env node
// Runs every benchmark under bench/<name>/index.js in turn; each prints its figures and ratios
// against a baseline measured in the same run. `npm run bench -- plan` runs only bench/plan.
import { readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
// Names pick benchmarks; flags (`--large`) go to each one run.
const only = new Set(process.argv.slice(2).filter((a) => !a.startsWith('--')));
const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const names = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(path.join(here, d.name, 'index.js')))
  .map((d) => d.name)
  .filter((n) => only.size === 0 || only.has(n))
  .sort();
let failed = 0;
for (const name of names) {
  console.log(`\n== bench/${name}`);
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(here, name, 'index.js'), ...flags], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
