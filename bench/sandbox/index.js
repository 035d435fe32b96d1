// bench/sandbox: the sandbox against node:wasi running the same preview1 binaries (the floor) and a
// bare `node` child spawn, all measured in this run.
//   (1) start latency of a cached guest, spawn to exit, median of 20
//   (2) writing 100 MiB in 4 KiB writes       (3) a CPU-bound loop
//   (4) idle memory (PSS) per guest with 20 guests up
// Targets: file throughput >= 50% of node:wasi, CPU within 10%, start <= 2x bare node, PSS <= 30 MiB.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnGuest } from '@lowcloud/sandbox';

const here = path.dirname(fileURLToPath(import.meta.url));
const guests = path.join(here, '../../test/fixtures/guests');
const g = (n) => path.join(guests, `${n}.wasm`);
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-sbx-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const grants = { network: { listen: [], connect: [] } };

function timeChild(args) {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const c = spawn(process.execPath, args, { stdio: 'ignore' });
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}
async function timeGuest(wasm, args, extra = {}) {
  const t = performance.now();
  const h = await spawnGuest({ wasm, args, env: {}, dirs: [], config: [], grants, stdout: 'pipe', stderr: 'pipe', ...extra }, { kernel: false });
  h.child.stdout?.resume();
  h.child.stderr?.resume();
  const exit = await h.exited;
  if (exit.kind !== 'exit' || exit.code !== 0) throw new Error(`${wasm}: ${JSON.stringify(exit)}`);
  return performance.now() - t;
}
const nodeWasi = (wasm, dir, args) => timeChild([path.join(here, 'node-wasi-run.mjs'), wasm, dir, ...args]);

// (1) start latency
await timeGuest(g('hello'), []); // admit once: later starts hit the cache
const bare = [];
const sbx = [];
const nw = [];
for (let i = 0; i < 20; i++) {
  bare.push(await timeChild(['-e', '0']));
  sbx.push(await timeGuest(g('hello'), []));
  nw.push(await nodeWasi(g('hello'), '-', []));
}
const startRatio = median(sbx) / median(bare);
console.log(`start, spawn to exit (median of 20): lowcloud ${median(sbx).toFixed(1)} ms | bare node ${median(bare).toFixed(1)} ms | node:wasi ${median(nw).toFixed(1)} ms -> ${startRatio.toFixed(2)}x bare node (target <= 2x) ${startRatio <= 2 ? 'OK' : 'OVER'}`);

// (2) 100 MiB in 4 KiB writes
const MiB100 = String(100 * 2 ** 20);
const fileSbx = await timeGuest(g('filewriter'), ['/data/big', MiB100, '4096'], { dirs: [{ host: work, guest: '/data' }], grants: { ...grants, disk: 200 * 2 ** 20 } });
rmSync(path.join(work, 'big'), { force: true });
const fileNw = await nodeWasi(g('filewriter'), work, ['/data/big', MiB100, '4096']);
rmSync(path.join(work, 'big'), { force: true });
const fileRatio = fileNw / fileSbx;
console.log(`write 100 MiB in 4 KiB writes: lowcloud ${fileSbx.toFixed(0)} ms (${(100 / (fileSbx / 1000)).toFixed(0)} MiB/s) | node:wasi ${fileNw.toFixed(0)} ms (${(100 / (fileNw / 1000)).toFixed(0)} MiB/s) -> ${(fileRatio * 100).toFixed(0)}% of node:wasi throughput (target >= 50%) ${fileRatio >= 0.5 ? 'OK' : 'UNDER'}`);

// (3) CPU-bound loop
const N = '2000000000';
const cpuSbx = median([await timeGuest(g('loop'), [N]), await timeGuest(g('loop'), [N]), await timeGuest(g('loop'), [N])]);
const cpuNw = median([await nodeWasi(g('loop'), '-', [N]), await nodeWasi(g('loop'), '-', [N]), await nodeWasi(g('loop'), '-', [N])]);
const cpuRatio = cpuSbx / cpuNw;
console.log(`CPU-bound loop (median of 3): lowcloud ${cpuSbx.toFixed(0)} ms | node:wasi ${cpuNw.toFixed(0)} ms -> ${cpuRatio.toFixed(3)}x (target within 10%) ${Math.abs(cpuRatio - 1) <= 0.1 ? 'OK' : 'OUTSIDE'}`);

// (4) idle PSS with 20 guests up
const handles = [];
for (let i = 0; i < 20; i++) {
  handles.push(await spawnGuest({ wasm: g('sleeper'), args: [], env: {}, dirs: [], config: [], grants, stdout: 'pipe', stderr: 'pipe' }, { kernel: false }));
}
await new Promise((r) => setTimeout(r, 1500));
const pss = handles.map((h) => Number(/Pss:\s+(\d+) kB/.exec(readFileSync(`/proc/${h.pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024);
const rss = handles.map((h) => Number(/Rss:\s+(\d+) kB/.exec(readFileSync(`/proc/${h.pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024);
await Promise.all(handles.map((h) => h.stop(1000)));
const avgPss = pss.reduce((a, b) => a + b, 0) / pss.length / 2 ** 20;
const avgRss = rss.reduce((a, b) => a + b, 0) / rss.length / 2 ** 20;
console.log(`idle memory, 20 guests up: PSS ${avgPss.toFixed(1)} MiB per guest (RSS ${avgRss.toFixed(1)} MiB) (target <= 30 MiB) ${avgPss <= 30 ? 'OK' : 'OVER'}`);
rmSync(work, { recursive: true, force: true });
