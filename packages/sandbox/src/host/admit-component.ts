import fs from 'node:fs';
import path from 'node:path';
import { transpileBytes } from '@bytecodealliance/jco-transpile';
import { UnsupportedWorldError } from '../errors.js';
import { SUPPORTED_INTERFACES } from '../common/interfaces.js';
import { binaryKind, rewriteMemoryMax } from '../wasm/module.js';

/**
 * Admission of a WASI 0.2 component: check its world, transpile it to JS + core modules once (jco),
 * set every core module's memory maximum to the grant, and cache the result by sha256 + grant.
 */
export async function admitComponent(file: string, bytes: Uint8Array, digest: string, pages: number, cacheDir: string): Promise<{ modulePath: string; cached: boolean }> {
  const out = path.join(cacheDir, `${digest}.${pages}p.component`);
  if (fs.existsSync(path.join(out, 'guest.js'))) return { modulePath: out, cached: true };
  const { files, imports, exports } = await transpileBytes(bytes, { name: 'guest', instantiation: 'async' });
  const unsupported = imports.map((i) => i.replace(/@.*$/, '')).filter((i) => !SUPPORTED_INTERFACES.includes(i));
  if (unsupported.length > 0) {
    throw new UnsupportedWorldError(file, `imports ${unsupported.join(', ')}, which lowcloud does not provide; supported: WASI 0.2 cli, clocks, io, random, sockets (and filesystem types)`);
  }
  if (!exports.some(([name]) => name.startsWith('wasi:cli/run'))) {
    throw new UnsupportedWorldError(file, 'does not export wasi:cli/run: only WASI 0.2 command components can run as processes');
  }
  const tmp = `${out}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    writeFiles(tmp, files, pages, file);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  fs.rmSync(out, { recursive: true, force: true });
  fs.renameSync(tmp, out);
  return { modulePath: out, cached: false };
}

function writeFiles(tmp: string, files: Record<string, Uint8Array>, pages: number, file: string): void {
  for (const [name, content] of Object.entries(files)) {
    if (name.endsWith('.d.ts')) continue;
    let data = content;
    fs.mkdirSync(path.dirname(path.join(tmp, name)), { recursive: true });
    if (name.endsWith('.wasm') && pages < 65536 && binaryKind(content, name) === 'module') data = rewriteMemoryMax(content, pages, `${file} (${name})`);
    fs.writeFileSync(path.join(tmp, name), data);
  }
  fs.writeFileSync(path.join(tmp, 'package.json'), '{"type":"module"}\n');
}
