import fs from 'node:fs';
import path from 'node:path';
import { UnsupportedWorldError } from '../errors.js';
import { SUPPORTED_INTERFACES } from '../common/interfaces.js';
import { binaryKind, rewriteMemoryMax } from '../wasm/module.js';

/**
 * Admission of a WASI 0.2 component: check its world, transpile it to JS + core modules once (jco),
 * set every core module's memory maximum to the grant, and cache the result by sha256 + grant.
 *
 * The transpile (~0.4 s of CPU for a 90 KiB component) is done once per binary, not once per
 * grant: its checked output is kept as `<digest>.transpiled`, and each memory grant's copy is made
 * from it by rewriting the core modules' maximum only. Processes that share a cache directory
 * (the agents `lowcloud up` starts on one computer) transpile a binary once between them: the
 * first takes a lock, the others wait for its output.
 */
export async function admitComponent(file: string, bytes: Uint8Array, digest: string, pages: number, cacheDir: string): Promise<{ modulePath: string; cached: boolean; transpiled: boolean }> {
  const out = path.join(cacheDir, `${digest}.${pages}p.component`);
  if (fs.existsSync(path.join(out, 'guest.js'))) return { modulePath: out, cached: true, transpiled: false };
  const raw = path.join(cacheDir, `${digest}.transpiled`);
  fs.mkdirSync(cacheDir, { recursive: true });
  let transpiled = false;
  if (!fs.existsSync(path.join(raw, 'guest.js'))) {
    await withLock(`${raw}.lock`, () => path.join(raw, 'guest.js'), async () => {
      await transpile(file, bytes, raw);
      transpiled = true;
    });
  }
  // Another grant's copy of the same binary, made from the checked transpile: no jco.
  const tmp = `${out}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    copyWithGrant(raw, tmp, pages, file);
    place(tmp, out);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return { modulePath: out, cached: false, transpiled };
}

/** jco's output for the component, checked (imports lowcloud provides, a wasi:cli/run export), to `raw`. */
async function transpile(file: string, bytes: Uint8Array, raw: string): Promise<void> {
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
  const tmp = `${raw}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    for (const [name, content] of Object.entries(files)) {
      if (name.endsWith('.d.ts')) continue;
      fs.mkdirSync(path.dirname(path.join(tmp, name)), { recursive: true });
      fs.writeFileSync(path.join(tmp, name), content);
    }
    fs.writeFileSync(path.join(tmp, 'package.json'), '{"type":"module"}\n');
    place(tmp, raw);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * `tmp` renamed to `dir`, unless a concurrent start of the same binary put a complete `dir` there
 * first: then its copy is kept and `tmp` dropped. A directory in the cache is never removed or
 * replaced: a guest host starting from it has it bound in its wall, and would find it emptied.
 */
function place(tmp: string, dir: string): void {
  try {
    fs.renameSync(tmp, dir);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  // Directories get here only by rename, whole: one without guest.js was not made by lowcloud.
  if (!fs.existsSync(path.join(dir, 'guest.js'))) throw new Error(`${dir} is incomplete (no guest.js): remove it, or the cache directory, and start again`);
}

/** The transpiled files of `from` into `to`, each core module's memory maximum set to `pages`. */
function copyWithGrant(from: string, to: string, pages: number, file: string, rel = ''): void {
  for (const e of fs.readdirSync(path.join(from, rel), { withFileTypes: true })) {
    const name = path.join(rel, e.name);
    if (e.isDirectory()) {
      fs.mkdirSync(path.join(to, name), { recursive: true });
      copyWithGrant(from, to, pages, file, name);
      continue;
    }
    if (!e.isFile()) continue; // the cache holds what transpile wrote: files and directories only
    let data = fs.readFileSync(path.join(from, name));
    if (name.endsWith('.wasm') && pages < 65536 && binaryKind(data, name) === 'module') data = Buffer.from(rewriteMemoryMax(data, pages, `${file} (${name})`));
    fs.writeFileSync(path.join(to, name), data);
  }
}

/** How long a waiter polls for another process's transpile, and how long a lock may be held. */
const LOCK_POLL_MS = 25;
const LOCK_MAX_MS = 120_000;

/**
 * Run `work` holding the directory lock `lock` (mkdir is atomic across processes), unless another
 * process holding it produced `done()` meanwhile. A lock whose holder died (its pid gone) or that
 * is older than LOCK_MAX_MS is taken over; a waiter whose holder failed does the work itself.
 */
async function withLock(lock: string, done: () => string, work: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      fs.mkdirSync(lock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (fs.existsSync(done())) return;
      if (stale(lock)) fs.rmSync(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
      continue;
    }
    try {
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      if (!fs.existsSync(done())) await work();
      return;
    } finally {
      fs.rmSync(lock, { recursive: true, force: true });
    }
  }
}

function stale(lock: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(lock);
  } catch {
    return false; // gone: the next mkdir takes it
  }
  if (Date.now() - st.mtimeMs > LOCK_MAX_MS) return true;
  let pid = NaN;
  try {
    pid = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
  } catch {
    // made, its pid not written yet: a holder that died in between leaves it for seconds, not minutes
    return Date.now() - st.mtimeMs > 5000;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
