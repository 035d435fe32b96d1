// bench/sandbox: the sandbox against node:wasi running the same preview1 binaries (the floor) and a
// bare `node` child spawn, all measured in this run.
//   (1) start latency of a cached guest, spawn to exit, median of 20
//   (2) writing 100 MiB in 4 KiB writes, preview1 and component       (3) a CPU-bound loop
//   (4) idle memory (PSS) per guest with 20 guests up   (5) shared guest hosts: 200/500/1,000 guests vs process isolation (shared.js)
// Targets: file throughput >= 0.8x node:wasi (preview1 and components), CPU within 10%, start <= 2x bare node, PSS <= 30 MiB.
//
// Every guest runs as the agent runs it: with memory and CPU grants and every kernel layer this
// machine has (cgroups, nftables, the ext4 image of the disk grant), and each figure is printed
// with the enforcement level each grant actually got in that run (`levels(report)`), so a figure
// measured without a layer says so. Add a figure with `measure()` / `startLatency()` below.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { probeCapabilities, spawnGuest } from '@lowcloud/sandbox';
import { wallMechanisms } from './wall.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const guests = path.join(here, '../../test/fixtures/guests');
const g = (n) => path.join(guests, `${n}.wasm`);
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-sbx-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const MiB = 2 ** 20;
/** The grants of a typical agent process: memory and CPU given, network denied (its kernel layer is an nftables table). */
const grants = { memory: 64 * MiB, cpu: 1, network: { listen: [], connect: [] } };

/** `[memory:kernel cpu:kernel disk:runtime network:kernel]`: the strongest level of each grant in one run. */
function levels(report) {
  const rank = { kernel: 2, runtime: 1, advisory: 0 };
  const best = (es) => es.reduce((b, e) => (b === null || rank[e.level] > rank[b] ? e.level : b), null) ?? 'none';
  return `[${['memory', 'cpu', 'disk', 'network', 'isolation'].map((k) => `${k}:${best(report[k] ?? [])}`).join(' ')}]`;
}

function timeChild(args) {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const c = spawn(process.execPath, args, { stdio: 'ignore' });
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

/** One guest run, spawn to exit, with the agent's layers unless `tuning` says otherwise. Returns ms and the levels it ran with. */
async function timeGuest(wasm, args, extra = {}, tuning = {}) {
  const t = performance.now();
  const h = await spawnGuest({ wasm, args, env: {}, dirs: [], config: [], grants, stdout: 'pipe', stderr: 'pipe', ...extra }, tuning);
  h.child.stdout?.resume();
  h.child.stderr?.resume();
  const exit = await h.exited;
  if (exit.kind !== 'exit' || exit.code !== 0) throw new Error(`${wasm}: ${JSON.stringify(exit)}`);
  return { ms: performance.now() - t, levels: levels(h.report) };
}
const nodeWasi = (wasm, dir, args) => timeChild([path.join(here, 'node-wasi-run.mjs'), wasm, dir, ...args]);

/** Median start latency of `n` runs of the hello guest, interleaved with a bare `node -e 0` and node:wasi. */
async function startLatency(label, extra = {}, tuning = {}, n = 20) {
  await timeGuest(g('hello'), [], extra, tuning); // admit once: later starts hit the cache
  const bare = [];
  const sbx = [];
  const nw = [];
  let lv = '';
  for (let i = 0; i < n; i++) {
    bare.push(await timeChild(['-e', '0']));
    const r = await timeGuest(g('hello'), [], extra, tuning);
    sbx.push(r.ms);
    lv = r.levels;
    nw.push(await nodeWasi(g('hello'), '-', []));
  }
  const ratio = median(sbx) / median(bare);
  console.log(
    `start, spawn to exit (median of ${n}), ${label} ${lv}: lowcloud ${median(sbx).toFixed(1)} ms | bare node ${median(bare).toFixed(1)} ms | node:wasi ${median(nw).toFixed(1)} ms -> ${ratio.toFixed(2)}x bare node (target <= 2x) ${ratio <= 2 ? 'OK' : 'OVER'}`,
  );
  return median(sbx);
}

/** Guests per second: `n` long-running guests started one after another (spawn until running), then stopped. */
async function startRate(tuning, n = 20) {
  const hs = [];
  const t = performance.now();
  for (let i = 0; i < n; i++) hs.push(await spawnGuest({ wasm: g('sleeper'), args: ['30'], env: {}, dirs: [], config: [], grants, stdout: 'pipe', stderr: 'pipe' }, tuning));
  const s = (performance.now() - t) / 1000;
  await Promise.all(hs.map((h) => h.stop(1000)));
  return { rate: n / s, levels: levels(hs[0].report) };
}

const caps = await probeCapabilities();
console.log(`kernel layers on this machine: cgroup ${caps.cgroup ?? 'none'} (${caps.controllers.join(', ') || 'no controllers'}), nftables ${caps.nftables ? 'yes' : 'no'}, disk images ${caps.diskImages ? 'yes' : 'no'}`);

// (1) start latency: as the agent runs guests, then with every kernel layer off (what each costs)
await startLatency('agent layers');
// The kernel wall around the guest host (bubblewrap + setpriv + seccomp, issue 9): starts with and
// without it alternate in one loop, so its cost is a difference of medians taken together.
{
  const on = [];
  const off = [];
  await timeGuest(g('hello'), [], {}, { wall: false });
  for (let i = 0; i < 20; i++) {
    on.push((await timeGuest(g('hello'), [])).ms);
    off.push((await timeGuest(g('hello'), [], {}, { wall: false })).ms);
  }
  const cost = median(on) - median(off);
  console.log(`the wall, spawn to exit (alternating, median of 20 each): with ${median(on).toFixed(1)} ms | without ${median(off).toFixed(1)} ms -> costs ${cost.toFixed(1)} ms a start (target <= 10 ms) ${cost <= 10 ? 'OK' : 'OVER'}`);
}
await wallMechanisms(work);
const rates = [await startRate({}), await startRate({ wall: false }), await startRate({}), await startRate({ wall: false })];
console.log(`guests started per second (20 long-running guests one after another; rounds alternate, best of 2): with the wall ${Math.max(rates[0].rate, rates[2].rate).toFixed(1)}/s ${rates[0].levels} | without ${Math.max(rates[1].rate, rates[3].rate).toFixed(1)}/s ${rates[1].levels}`);
await startLatency('runtime layer only (kernel off)', {}, { kernel: false });

// (2) 100 MiB in 4 KiB writes with the disk quota on, into a data directory with the agent's disk
// grant: its ext4 image where the machine has loop devices. The preview1 module and the same C
// program as a WASI 0.2 component (preview1 adapter -> wasi:filesystem), median of 3 each. node:wasi writes into the
// same kind of filesystem (an ext4 image made and mounted the same way), so the ratio compares the
// runtimes, not the filesystems. Each is also run writing 0 bytes: throughput is 100 MiB over the
// difference (a component's start costs more than a module's; that is (1)'s figure, not this one).
const MiB100 = String(100 * MiB);
async function writes(name, wasm, tuning = {}) {
  const d = path.join(work, name);
  mkdirSync(d);
  const extra = { dirs: [{ host: d, guest: '/data', image: `${d}.ext4` }], grants: { ...grants, disk: 200 * MiB } };
  await timeGuest(wasm, ['/data/big', '4096', '4096'], extra, tuning); // makes the image and admits: not timed
  const zero = median([await timeGuest(wasm, ['/data/big', '0', '4096'], extra, tuning), await timeGuest(wasm, ['/data/big', '0', '4096'], extra, tuning), await timeGuest(wasm, ['/data/big', '0', '4096'], extra, tuning)].map((r) => r.ms));
  const full = [];
  for (let i = 0; i < 3; i++) full.push(await timeGuest(wasm, ['/data/big', MiB100, '4096'], extra, tuning));
  rmSync(`${d}.ext4`, { force: true });
  return { zero, ms: median(full.map((r) => r.ms)), levels: full[0].levels };
}
// With the agent's layers, then the runtime layer alone (no memory cgroup charging the page cache
// of the writes to the guest, no CPU quota): what the JS filesystem itself costs.
const p1 = await writes('data', g('filewriter'));
const p2 = await writes('data2', g('filewriter.component'));
const p1r = await writes('data3', g('filewriter'), { kernel: false });
const p2r = await writes('data4', g('filewriter.component'), { kernel: false });
const nwDir = path.join(work, 'nw');
mkdirSync(nwDir);
let nwFs = 'the temporary directory';
if (caps.diskImages) {
  execFileSync('truncate', ['-s', String(211 * MiB), `${nwDir}.ext4`]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', `${nwDir}.ext4`]);
  execFileSync('mount', ['-o', 'loop,nosuid,nodev,noexec', `${nwDir}.ext4`, nwDir]);
  nwFs = 'an ext4 image';
}
const nwZero = median([await nodeWasi(g('filewriter'), nwDir, ['/data/big', '0', '4096']), await nodeWasi(g('filewriter'), nwDir, ['/data/big', '0', '4096']), await nodeWasi(g('filewriter'), nwDir, ['/data/big', '0', '4096'])]);
const fileNw = median([await nodeWasi(g('filewriter'), nwDir, ['/data/big', MiB100, '4096']), await nodeWasi(g('filewriter'), nwDir, ['/data/big', MiB100, '4096']), await nodeWasi(g('filewriter'), nwDir, ['/data/big', MiB100, '4096'])]);
if (caps.diskImages) execFileSync('umount', [nwDir]);
rmSync(`${nwDir}.ext4`, { force: true });
// The runtime-layer runs write into a plain directory: so does node:wasi for their baseline.
const plain = path.join(work, 'nw-plain');
mkdirSync(plain);
const plainZero = median([await nodeWasi(g('filewriter'), plain, ['/data/big', '0', '4096']), await nodeWasi(g('filewriter'), plain, ['/data/big', '0', '4096']), await nodeWasi(g('filewriter'), plain, ['/data/big', '0', '4096'])]);
const plainFull = median([await nodeWasi(g('filewriter'), plain, ['/data/big', MiB100, '4096']), await nodeWasi(g('filewriter'), plain, ['/data/big', MiB100, '4096']), await nodeWasi(g('filewriter'), plain, ['/data/big', MiB100, '4096'])]);
rmSync(plain, { recursive: true, force: true });
const mibs = (ms) => (100 / (ms / 1000)).toFixed(0);
for (const [what, r, base, zero, fs] of [
  ['preview1', p1, fileNw, nwZero, nwFs],
  ['component', p2, fileNw, nwZero, nwFs],
  ['preview1', p1r, plainFull, plainZero, 'a plain directory'],
  ['component', p2r, plainFull, plainZero, 'a plain directory'],
]) {
  const ratio = (base - zero) / (r.ms - r.zero);
  console.log(
    `write 100 MiB in 4 KiB writes, quota on, ${what} ${r.levels}: lowcloud ${r.ms.toFixed(0)} ms spawn to exit, ${mibs(r.ms - r.zero)} MiB/s past its start | node:wasi into ${fs} ${base.toFixed(0)} ms, ${mibs(base - zero)} MiB/s -> ${ratio.toFixed(2)}x node:wasi throughput (target >= 0.8x) ${ratio >= 0.8 ? 'OK' : 'UNDER'}`,
  );
}

// (3) CPU-bound loop, under a 1-core grant (the loop is single-threaded); long enough (~1 s) that
// the start-up difference (see (1)) is a few percent of it
const N = '4000000000'; // the guest's unsigned long is 32 bits
const cpuRuns = [await timeGuest(g('loop'), [N]), await timeGuest(g('loop'), [N]), await timeGuest(g('loop'), [N])];
const cpuSbx = median(cpuRuns.map((r) => r.ms));
const cpuNw = median([await nodeWasi(g('loop'), '-', [N]), await nodeWasi(g('loop'), '-', [N]), await nodeWasi(g('loop'), '-', [N])]);
const cpuRatio = cpuSbx / cpuNw;
console.log(`CPU-bound loop (median of 3) ${cpuRuns[0].levels}: lowcloud ${cpuSbx.toFixed(0)} ms | node:wasi ${cpuNw.toFixed(0)} ms -> ${cpuRatio.toFixed(3)}x (target within 10%) ${Math.abs(cpuRatio - 1) <= 0.1 ? 'OK' : 'OUTSIDE'}`);

// (4) idle PSS with 20 guests up
const handles = [];
for (let i = 0; i < 20; i++) {
  handles.push(await spawnGuest({ wasm: g('sleeper'), args: [], env: {}, dirs: [], config: [], grants, stdout: 'pipe', stderr: 'pipe' }));
}
await new Promise((r) => setTimeout(r, 1500));
const smaps = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
const pss = handles.map((h) => smaps(h.pid, 'Pss'));
const rss = handles.map((h) => smaps(h.pid, 'Rss'));
const idleLevels = levels(handles[0].report);
await Promise.all(handles.map((h) => h.stop(1000)));
const avgPss = pss.reduce((a, b) => a + b, 0) / pss.length / MiB;
const avgRss = rss.reduce((a, b) => a + b, 0) / rss.length / MiB;
console.log(`idle memory, 20 guests up ${idleLevels}: PSS ${avgPss.toFixed(1)} MiB per guest (RSS ${avgRss.toFixed(1)} MiB) (target <= 30 MiB) ${avgPss <= 30 ? 'OK' : 'OVER'}`);
rmSync(work, { recursive: true, force: true });

// (5) shared guest hosts against process isolation (bench/sandbox/shared.js, also runnable alone)
await import('./shared.js');
