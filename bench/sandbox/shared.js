// bench/sandbox shared: `isolation: 'shared'` guest hosts against `process` isolation in the same run.
//   For 200, 500 and 1,000 idle guests (the sleeper, 8 MiB memory grant, the wall and every kernel
//   layer this machine has): time from the first spawnGuest call to every guest's code running
//   (each host has answered a usage request sent after its last guest's add: it ran to its first
//   wait), starts/s, and PSS per guest (every process below this one - hosts, launchers, walls, a
//   spare host started ahead of need - plus this process's growth, / guests).
//   Baseline: 20 process guests, started 5 at a time, the same way.
// Run on its own: `node bench/sandbox/shared.js` (needs a Node.js with JSPI: this one >= 24, or LOWCLOUD_GUEST_NODE).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jspiNode, spawnGuest } from '@lowcloud/sandbox';

const here = path.dirname(fileURLToPath(import.meta.url));
const sleeper = path.join(here, '../../test/fixtures/guests/sleeper.wasm');
const work = mkdtempSync(path.join(os.tmpdir(), 'lowcloud-bench-shared-'));
const MiB = 2 ** 20;
const pss = (pid) => {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
};
/** Every process below this one (guest hosts, and their launchers and walls: spares included). */
function descendants() {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const below = (pid) => [...parent].filter(([, pp]) => pp === pid).flatMap(([c]) => [c, ...below(c)]);
  return below(process.pid);
}
const opts = (isolation, i) => ({
  wasm: sleeper, args: [], env: {}, dirs: [], config: [], isolation, cacheDir: path.join(work, 'cache'),
  grants: { memory: 8 * MiB, network: { listen: [], connect: [] } },
  stdout: { file: path.join(work, `${isolation}-${i}.log`), maxBytes: 4096, keep: 1 }, stderr: { file: path.join(work, `${isolation}-${i}.log`), maxBytes: 4096, keep: 1 },
});

async function batch(isolation, n, parallel) {
  globalThis.gc?.();
  const before = pss(process.pid);
  const t0 = performance.now();
  const handles = [];
  for (let i = 0; i < n; i += parallel) handles.push(...(await Promise.all(Array.from({ length: Math.min(parallel, n - i) }, (_, j) => spawnGuest(opts(isolation, i + j))))));
  // Running: a shared host answers usage only after it ran the guests added before (messages in order).
  const lastOfHost = new Map(handles.map((h) => [h.host, h]));
  await Promise.all([...lastOfHost.values()].map((h) => h.usage()));
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 500));
  const hostPids = [...new Set(handles.map((h) => h.pid))];
  const total = descendants().reduce((s, p) => s + pss(p), 0) + Math.max(0, pss(process.pid) - before);
  const r = { isolation, n, ms, perS: (n / ms) * 1000, hosts: hostPids.length, pssPerGuest: total / n, level: handles[0].report.isolation.map((l) => l.level).join('+') };
  await Promise.all(handles.map((h) => h.stop(2000)));
  // The next batch starts from no host (a spare left by this one would flatter it).
  for (const p of descendants()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  return r;
}

if (jspiNode() === null) {
  console.log('shared guests: skipped: no Node.js with JSPI (>= 24) for the shared guest host (set LOWCLOUD_GUEST_NODE)');
} else {
  const rows = [await batch('process', 20, 5)];
  for (const n of [200, 500, 1000]) rows.push(await batch('shared', n, 100));
  const base = rows[0];
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; shared hosts run on ${jspiNode()}`);
  for (const r of rows) console.log(`${r.isolation} x${r.n}: ${r.ms.toFixed(0)} ms to all running, ${r.perS.toFixed(0)} starts/s (${(r.perS / base.perS).toFixed(1)}x process), ${r.hosts} host(s), PSS ${(r.pssPerGuest / 1024).toFixed(0)} KiB per guest (${(base.pssPerGuest / r.pssPerGuest).toFixed(0)}x less than process), isolation [${r.level}]`);
}
rmSync(work, { recursive: true, force: true });
