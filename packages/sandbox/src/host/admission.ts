import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UnsupportedWorldError } from '../errors.js';
import { binaryKind, pagesFor, rewriteMemoryMax, type BinaryKind } from '../wasm/module.js';

export interface Admitted {
  digest: string;
  kind: BinaryKind;
  /** The bytes the guest host loads: memory maximum already set to the grant. */
  modulePath: string;
  /** True when this start did no preparation work (found in the cache). */
  cached: boolean;
}

export function defaultCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'lowcloud', 'admitted');
}

/**
 * Check a binary and prepare it for running under a memory grant. The result is cached by the
 * binary's sha256 and the grant, so a second start of the same binary does no work here.
 */
export function admit(wasmPath: string, memoryBytes: number | undefined, cacheDir = defaultCacheDir()): Admitted {
  const bytes = fs.readFileSync(wasmPath);
  const kind = binaryKind(bytes, wasmPath);
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (kind === 'component') {
    throw new UnsupportedWorldError(
      wasmPath,
      'is a WASI 0.2 component; this build of lowcloud runs WASI preview1 command modules (wasm32-wasi / wasm32-wasip1 targets) - rebuild for wasm32-wasip1',
    );
  }
  // 65536 pages = 4 GiB, the wasm32 maximum: without a memory grant nothing is rewritten.
  const pages = memoryBytes === undefined ? 65536 : pagesFor(memoryBytes);
  const out = path.join(cacheDir, `${digest}.${pages}p.wasm`);
  if (fs.existsSync(out)) return { digest, kind, modulePath: out, cached: true };
  const prepared = memoryBytes === undefined ? bytes : rewriteMemoryMax(bytes, pages, wasmPath);
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, prepared);
  fs.renameSync(tmp, out);
  return { digest, kind, modulePath: out, cached: false };
}
