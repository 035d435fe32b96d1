// bench/plan: `lowcloud plan` of two infra files (N processes on N/10 machines, 5% changed in every
// way a plan knows) against the floor: the fastest YAML parser on npm parsing both files, in the
// same run. Targets: the whole plan within 2x the floor, growing linearly, in <= 1 GiB; 100,000
// processes in <= 5 s. `--large` adds 50,000 and 100,000 processes; `--sizes 5000,30000` picks sizes;
// `--flow` plans each size again with the files in the examples' style (one-line flow mappings for
// capacity, env, config and grants), which the planner's hand-written reader takes too.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import jsyaml from 'js-yaml';
import { parse } from 'yaml';
import { buildDocument, loadForPlan, minimalPlanner } from '@lowcloud/planner';
import { changedSet, infraText, writeBlobs } from './fleet-files.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const sizesArg = args.includes('--sizes') ? args[args.indexOf('--sizes') + 1] : undefined;
const styles = args.includes('--flow') ? ['block', 'flow'] : ['block'];
const sizes = sizesArg !== undefined ? sizesArg.split(',').map(Number) : args.includes('--large') ? [10_000, 20_000, 50_000, 100_000] : [10_000, 20_000];
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const time = (f) => {
  const t = performance.now();
  f();
  return performance.now() - t;
};

// The candidates, timed on the smallest pair; the fastest is the floor at every size. (`yaml` is
// what lowcloud uses for positions; it is timed once, at the smallest size: it is the slow one.)
const candidates = {
  'js-yaml load': (text) => jsyaml.load(text),
  'yaml parse (uniqueKeys off)': (text) => parse(text, { uniqueKeys: false }),
};

const loadavg = async () => (await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ');
console.log(`node ${process.version}, load average ${await loadavg()}`);
let floorName;
const rows = [];
for (const n of sizes) for (const style of styles) {
  const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-plan-'));
  try {
    writeBlobs(dir);
    const aText = infraText(n, new Set(), style);
    const bText = infraText(n, changedSet(n), style);
    writeFileSync(path.join(dir, 'a.yaml'), aText);
    writeFileSync(path.join(dir, 'b.yaml'), bText);
    const rounds = n >= 50_000 ? 2 : 3;
    if (floorName === undefined) {
      const t = Object.fromEntries(Object.entries(candidates).map(([name, f]) => [name, median(Array.from({ length: rounds }, () => time(() => (f(aText), f(bText)))))]));
      for (const [name, ms] of Object.entries(t)) console.log(`  candidate ${name}: ${ms.toFixed(0)} ms for both ${n}-process files`);
      floorName = Object.entries(t).sort((x, y) => x[1] - y[1])[0][0];
      console.log(`  floor: ${floorName}`);
    }
    const parseBoth = candidates[floorName];
    const floor = [];
    const full = [];
    let doc;
    for (let r = 0; r < rounds; r++) {
      globalThis.gc?.();
      floor.push(time(() => (parseBoth(aText), parseBoth(bText))));
      globalThis.gc?.();
      const t = performance.now();
      const [a, b] = await loadForPlan({ file: path.join(dir, 'a.yaml') }, { file: path.join(dir, 'b.yaml') }, minimalPlanner.reads);
      doc = buildDocument(minimalPlanner.plan(a, b), a, b);
      JSON.stringify(doc, null, 2);
      full.push(performance.now() - t);
    }
    // The command as an operator runs it, in a fresh process: wall time (start-up included) and peak memory.
    const t = performance.now();
    const cli = spawnSync(process.execPath, [path.join(here, 'cli-with-peak.js'), 'plan', path.join(dir, 'a.yaml'), path.join(dir, 'b.yaml'), '--json'], { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 20 });
    const cliMs = performance.now() - t;
    const peak = Number(/peak-rss-kib (\d+)/.exec(cli.stderr.toString())?.[1] ?? NaN) / 1024;
    if (cli.status !== 0) throw new Error(`lowcloud plan failed: ${cli.stderr.toString()}`);
    const row = { n, style, mb: bText.length / 1e6, calls: doc.calls.length, floor: median(floor), plan: median(full), cliMs, peak };
    rows.push(row);
    console.log(
      `${String(n).padStart(7)} processes, ${style.padEnd(5)} (${row.mb.toFixed(1)} MB a file, ${row.calls} calls): plan ${row.plan.toFixed(0)} ms, floor ${row.floor.toFixed(0)} ms, ${(row.plan / row.floor).toFixed(2)}x (target <= 2x) | \`lowcloud plan\` ${(cliMs / 1000).toFixed(2)} s = ${(cliMs / row.floor).toFixed(2)}x the floor, peak RSS ${peak.toFixed(0)} MiB (target <= 1024)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const blockRows = rows.filter((r) => r.style === 'block');
const first = blockRows[0];
for (const r of blockRows.slice(1)) console.log(`growth ${first.n} -> ${r.n} processes (${(r.n / first.n).toFixed(0)}x): plan ${(r.plan / first.plan).toFixed(1)}x, floor ${(r.floor / first.floor).toFixed(1)}x`);
for (const big of rows.filter((r) => r.n === 100_000)) console.log(`100,000 processes, ${big.style}: \`lowcloud plan\` ${(big.cliMs / 1000).toFixed(2)} s (target <= 5 s) ${big.cliMs <= 5000 ? 'OK' : 'OVER TARGET'}`);
const over = rows.filter((r) => r.plan / r.floor > 2 || r.peak > 1024);
console.log(over.length === 0 ? 'ratio and memory targets: OK' : `OVER TARGET at ${over.map((r) => `${r.n} (${r.style})`).join(', ')}`);
console.log(`load average at the end ${await loadavg()}`);
