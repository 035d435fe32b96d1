// The floor: the same preview1 binary under node:wasi (no grants, no isolation). argv: wasm dataDir args...
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const [wasm, dataDir, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: ['guest', ...args], env: {}, preopens: dataDir === '-' ? {} : { '/data': dataDir }, returnOnExit: true });
const mod = await WebAssembly.compile(readFileSync(wasm));
const inst = await WebAssembly.instantiate(mod, wasi.getImportObject());
process.exitCode = wasi.start(inst);
