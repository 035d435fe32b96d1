import fs from 'node:fs';
import path from 'node:path';
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
  // Loaded only for a component: jco-transpile loads native bindings (oxc-minify's) at import,
  // which an install without optional dependencies lacks; preview1 modules need none of it.
  let jco: typeof import('@bytecodealliance/jco-transpile');
  try {
    jco = await import('@bytecodealliance/jco-transpile');
  } catch (err) {
    throw new UnsupportedWorldError(file, `is a component, and the component tooling (@bytecodealliance/jco-transpile) could not be loaded: ${err instanceof Error ? err.message.split('\n')[0] : String(err)} (its native bindings are optional dependencies: install without --omit=optional)`);
  }
  const { files, imports, exports } = await jco.transpileBytes(bytes, { name: 'guest', instantiation: 'async' });
  const unsupported = imports.map((i) => i.replace(/@.*$/, '')).filter((i) => !SUPPORTED_INTERFACES.includes(i));
  if (unsupported.length > 0) {
    throw new UnsupportedWorldError(file, `imports ${unsupported.join(', ')}, which lowcloud does not provide; supported: WASI 0.2 cli, clocks, io, random, sockets, filesystem, and lowcloud:gpu/gpu (with a gpu grant)`);
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
