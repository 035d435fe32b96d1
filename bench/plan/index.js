// bench/plan: 10,000 processes on 1,000 machines, 5% changed. Prints the whole `plan` (parse,
// validate, resolve with hashing, diff, plan document) against the floor: parsing both YAML files
// alone, measured in the same run. Target: plan within 2x the floor.
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { loadFromWorkingTree, minimalPlanner, buildDocument } from '@lowcloud/planner';

const MACHINES = 1000;
const PROCESSES = 10_000;
const CHANGED = 0.05;
const ROUNDS = 3;

const dir = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-plan-'));
mkdirSync(path.join(dir, 'bin'));
mkdirSync(path.join(dir, 'config'));
for (let i = 0; i < 10; i++) writeFileSync(path.join(dir, 'bin', `app${i}.wasm`), Buffer.concat([Buffer.from('\0asm\x01\0\0\0'), Buffer.alloc(64 * 1024, i)]));
for (let i = 0; i < 20; i++) writeFileSync(path.join(dir, 'config', `c${i}.toml`), `setting = ${i}\n`);

function file(changed) {
  const lines = ['version: 1', 'machines:'];
  for (let m = 0; m < MACHINES; m++) lines.push(`  m${m}: { agent: local, region: r${m % 7}, capacity: { cpu: 16, memory: 64GiB, disk: 1TiB } }`);
  lines.push('processes:');
  for (let p = 0; p < PROCESSES; p++) {
    const c = changed.has(p);
    const kind = Math.floor(p / 20) % 4;
    const machine = c && kind === 3 ? (p + 1) % MACHINES : p % MACHINES;
    const cfg = c && kind === 0 ? (p + 1) % 20 : p % 20;
    const mem = c && kind === 1 ? 128 : 64;
    const bin = c && kind === 2 ? (p + 1) % 10 : p % 10;
    lines.push(
      `  p${p}:`,
      `    machine: m${machine}`,
      `    binary: bin/app${bin}.wasm`,
      `    args: [--id, "${p}"]`,
      `    env: { LOG: info }`,
      `    config: { /etc/app.toml: config/c${cfg}.toml }`,
      `    grants: { cpu: 0.1, memory: ${mem}MiB, disk: 1GiB, network: { listen: [${10000 + p}] } }`,
    );
  }
  return `${lines.join('\n')}\n`;
}

const changed = new Set();
for (let p = 0; p < PROCESSES; p += Math.round(1 / CHANGED)) changed.add(p);
const aText = file(new Set());
const bText = file(changed);
writeFileSync(path.join(dir, 'a.yaml'), aText);
writeFileSync(path.join(dir, 'b.yaml'), bText);

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const floor = [];
const full = [];
let doc;
for (let r = 0; r < ROUNDS; r++) {
  let t = performance.now();
  // The cheapest parse this YAML library offers (no unique-key check: the planner checks
  // duplicates itself, in linear time).
  parse(aText, { uniqueKeys: false });
  parse(bText, { uniqueKeys: false });
  floor.push(performance.now() - t);
  t = performance.now();
  const [a, b] = await Promise.all([loadFromWorkingTree(path.join(dir, 'a.yaml')), loadFromWorkingTree(path.join(dir, 'b.yaml'))]);
  doc = buildDocument(minimalPlanner.plan(a, b), a, b);
  JSON.stringify(doc);
  full.push(performance.now() - t);
}
rmSync(dir, { recursive: true, force: true });

const f = median(floor);
const p = median(full);
console.log(`processes: ${PROCESSES}, machines: ${MACHINES}, changed: ${changed.size} (${CHANGED * 100}%), file size: ${(bText.length / 1e6).toFixed(1)} MB each`);
console.log(`plan: ${doc.calls.length} calls, summary ${JSON.stringify(doc.summary)}`);
console.log(`floor (parse both YAML files): ${f.toFixed(0)} ms (median of ${ROUNDS})`);
console.log(`whole plan:                    ${p.toFixed(0)} ms (median of ${ROUNDS})`);
console.log(`ratio: ${(p / f).toFixed(2)}x (target <= 2x) ${p / f <= 2 ? 'OK' : 'OVER TARGET'}`);
