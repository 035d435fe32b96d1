// bench/wordcount: WordCount over generated text (WORDCOUNT_SIZES MB, default 50,100,200), three ways,
// in one run, on this machine:
//   - lowcloud: examples/wordcount (2 mappers, 2 reducers, collect on two local machines), timed
//     from `lowcloud up` to collect's `done`. That includes starting the two `local` agents (up
//     starts them; machines with remote agents find them running), planning, uploading the inputs
//     as blobs and starting the guests. It also prints the time from the plan on (agents running),
//     the figure to hold against the other two when agents are already up, as on real machines;
//   - one guest: the same counting code (wc-single.wasm) in one process through `lowcloud run`;
//   - native: one Node.js process (native-count.mjs), the floor.
// The three results must be byte-equal. For lowcloud it also says where the time went: up (agents,
// plan, upload of the inputs, starts), the mappers' reading and counting (their own log lines'
// times), and the rest (messages, reduce, collect).
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from './generate.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../..');
const cli = path.join(root, 'bin/lowcloud.js');
const sizes = (process.env.WORDCOUNT_SIZES ?? '50,100,200').split(',').map(Number);
const work = mkdtempSync(path.join(tmpdir(), 'lowcloud-bench-wordcount-'));

function run(args, opts = {}) {
  return new Promise((resolve) => {
    const t = performance.now();
    const c = spawn(process.execPath, args, { cwd: opts.cwd ?? root, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    c.stdout.on('data', (d) => out.push(d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err, ms: performance.now() - t }));
  });
}

const read = (f) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mbps = (bytes, ms) => (bytes / 1e6 / (ms / 1000)).toFixed(1);

let failed = false;
try {
  // What `lowcloud run` costs before it counts anything (CLI, sandbox, guest host, compile): a 4-byte input.
  mkdirSync(path.join(work, 'tiny'));
  writeFileSync(path.join(work, 'tiny/t.txt'), 'a b\n');
  const fixed = await run([cli, 'run', path.join(root, 'examples/wordcount/bin/wc-single.wasm'), '--memory', '512MiB', '--dir', `${path.join(work, 'tiny')}::/in`, '--', '/in/t.txt']);
  console.log(`one guest through lowcloud run on a 4-byte input (its fixed cost): ${(fixed.ms / 1000).toFixed(2)} s`);
  for (const mb of sizes) {
    const dir = path.join(work, `${mb}mb`);
    cpSync(path.join(root, 'examples/wordcount'), dir, { recursive: true, filter: (s) => path.basename(s) !== '.lowcloud' });
    // Two halves of one generated text: each mapper's split.
    await generate(path.join(dir, 'input/a.txt'), (mb * 1e6) / 2, 1);
    await generate(path.join(dir, 'input/b.txt'), (mb * 1e6) / 2, 2);
    const inputs = ['input/a.txt', 'input/b.txt'].map((f) => path.join(dir, f));
    const bytes = inputs.reduce((s, f) => s + statSync(f).size, 0);

    const native = await run([path.join(here, 'native-count.mjs'), ...inputs]);
    const single = await run([cli, 'run', path.join(root, 'examples/wordcount/bin/wc-single.wasm'), '--memory', '512MiB', '--dir', `${path.join(dir, 'input')}::/in`, '--', '/in/a.txt', '/in/b.txt']);

    const t0 = performance.now();
    const wall0 = Date.now();
    const up = await run([cli, 'up', 'infra.yaml'], { cwd: dir });
    // up's progress lines are timestamped: when the agents answered, uploads ended, starts ended.
    const at = (re) => {
      const times = [...up.stderr.matchAll(new RegExp(`^(\\S+Z) ${re}`, 'gm'))].map((m) => Date.parse(m[1]) - wall0);
      return times;
    };
    const planned = Math.min(...at('\\S+: \\d+ call\\(s\\) to make'));
    const uploaded = Math.max(...at('\\S+: start \\S+ \\.\\.\\.').slice(0, 2));
    const mapStarted = Math.max(...at('\\S+: start map-[ab] ok'));
    const upMs = performance.now() - t0;
    const logs = (m, n) => read(path.join(dir, '.lowcloud/agents', m, 'state/logs', `${n}.log`));
    let mapsDone = 0;
    let mapsCounted = 0; // each mapper logs its totals once it has read and counted, before it sends
    while (!logs('eu', 'collect').endsWith('done\n') && performance.now() - t0 < 600_000 && up.code === 0) {
      if (mapsCounted === 0 && / bytes, \d+ words/.test(logs('eu', 'map-a')) && / bytes, \d+ words/.test(logs('us', 'map-b'))) mapsCounted = performance.now() - t0;
      if (mapsDone === 0 && logs('eu', 'map-a').includes('done') && logs('us', 'map-b').includes('done')) mapsDone = performance.now() - t0;
      await sleep(20);
    }
    const lowMs = performance.now() - t0;
    if (mapsDone === 0) mapsDone = lowMs;
    if (mapsCounted === 0) mapsCounted = mapsDone;
    const result = read(path.join(dir, '.lowcloud/agents/eu/state/data/collect/result.txt'));
    await run([cli, 'down', 'infra.yaml'], { cwd: dir });

    const equal = native.code === 0 && single.code === 0 && single.stdout.equals(native.stdout) && result === native.stdout.toString();
    if (!equal) failed = true;
    const total = /total (\d+) words, (\d+) distinct/.exec(native.stdout.toString());
    console.log(`\n${mb} MB (${(bytes / 1e6).toFixed(1)} MB, ${total?.[1]} words, ${total?.[2]} distinct): results ${equal ? 'equal' : 'DIFFER'}`);
    console.log(`  native Node.js, 1 process   ${(native.ms / 1000).toFixed(2)} s  ${mbps(bytes, native.ms)} MB/s`);
    console.log(`  one guest (lowcloud run)    ${(single.ms / 1000).toFixed(2)} s  ${mbps(bytes, single.ms)} MB/s`);
    console.log(`  lowcloud 2x2, up -> done    ${(lowMs / 1000).toFixed(2)} s  ${mbps(bytes, lowMs)} MB/s  (${(native.ms / lowMs).toFixed(2)}x native, ${(single.ms / lowMs).toFixed(2)}x one guest)`);
    const s1 = (ms) => `${(ms / 1000).toFixed(2)} s`;
    console.log(`    agents started and planned at ${s1(planned)}; inputs uploaded by ${s1(uploaded)}; both mappers started by ${s1(mapStarted)}; up returned at ${s1(upMs)}`);
    console.log(`    both mappers had read and counted (guest start, read, count) at ${s1(mapsCounted)}, sent and done at ${s1(mapsDone)}; then messages, reduce, collect ${s1(lowMs - mapsDone)}`);
    console.log(`    from the plan on (agents already running): ${s1(lowMs - planned)}  ${mbps(bytes, lowMs - planned)} MB/s  (${(native.ms / (lowMs - planned)).toFixed(2)}x native, ${(single.ms / (lowMs - planned)).toFixed(2)}x one guest)`);
    if (up.code !== 0) console.log(up.stderr.slice(-2000));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
