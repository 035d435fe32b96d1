#!/usr/bin/env node
// bench/gpu: N x N float32 matrix product on the GPU (WebGPU through lowcloud:gpu, Dawn) against
// the same product in wasm on the CPU, inside the same guest (examples/gpu/bin/matmul.wasm run by
// `lowcloud run`), for a few sizes; names the adapter. Without a GPU the adapter is Dawn's OpenGL
// backend over Mesa's llvmpipe, which runs the shader on the CPU: then "GPU" loses to plain wasm,
// and the figure says what the path costs, not what a GPU gives.
// `node bench/gpu [N ...]` (default 64 128 256 384).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sizes = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['64', '128', '256', '384'];
let adapter = null;
console.log('   N   GPU ms  GPU GFLOP/s   CPU ms  CPU GFLOP/s  GPU/CPU speed  max error');
for (const n of sizes) {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/lowcloud.js'), 'run', path.join(root, 'examples/gpu/bin/matmul.wasm'), '--gpu-memory', '1GiB', '--gpu-submit-seconds', '300', '--', n], { encoding: 'utf8' });
  const m = /^n (\d+) max error (\S+) gpu (\S+) ms (\S+) GFLOP\/s cpu (\S+) ms (\S+) GFLOP\/s adapter (.*)$/m.exec(r.stdout);
  if (r.status !== 0 || m === null) {
    console.log(`${n.padStart(4)}  failed (exit ${r.status}): ${(r.stdout + r.stderr).trim().split('\n').slice(-2).join(' ')}`);
    process.exitCode = 1;
    continue;
  }
  const [, , err, gms, ggf, cms, cgf, name] = m;
  adapter = name;
  console.log(`${n.padStart(4)} ${gms.padStart(8)} ${ggf.padStart(12)} ${cms.padStart(8)} ${cgf.padStart(12)} ${(Number(cms) / Number(gms)).toFixed(2).padStart(13)}x  ${err}`);
}
console.log(`adapter: ${adapter ?? 'none'}`);
console.log('GPU ms: buffers, upload, shader compile, dispatch, read back (one run, first use); CPU ms: the naive triple loop in wasm (V8).');
