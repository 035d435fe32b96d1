import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binaryKind, rewriteMemoryMax, type BinaryKind } from '../wasm/module.js';
import { admitComponent } from './admit-component.js';
import { memoryLimits } from './grants/memory.js';

export interface Admitted {
  digest: string;
  kind: BinaryKind;
  /** What the guest host loads: a module file, or a directory of transpiled component files. */
  modulePath: string;
  /** True when this start did no preparation work (found in the cache). */
  cached: boolean;
  /** A component this call transpiled (jco): once per binary and cache directory, whatever the grants. */
  transpiled?: boolean;
}

export function defaultCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'lowcloud', 'admitted');
}

/**
 * Check a binary and prepare it for running under a memory grant. The result is cached by the
 * binary's sha256 and the grant, so a second start of the same binary does no work here.
 */
export async function admit(wasmPath: string, memoryBytes: number | undefined, cacheDir = defaultCacheDir()): Promise<Admitted> {
  // The same file admitted before by this process (a thousand guests of one binary): no read, no hash.
  const st = fs.statSync(wasmPath);
  const seenKey = [wasmPath, st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs, memoryBytes ?? '', cacheDir].join('\0');
  const seen = admittedHere.get(seenKey);
  if (seen !== undefined && fs.existsSync(seen.modulePath)) return { ...seen, cached: true };
  // Starts made together (a group's 256 acts) wait for the one admission under way, rather than
  // each reading, hashing and checking the same file again.
  const pending = admitting.get(seenKey);
  if (pending !== undefined) return { ...(await pending), cached: true };
  const admission = admitFile(wasmPath, memoryBytes, cacheDir);
  admitting.set(seenKey, admission);
  try {
    const result = await admission;
    if (admittedHere.size >= 1000) admittedHere.clear();
    admittedHere.set(seenKey, result);
    return result;
  } finally {
    admitting.delete(seenKey);
  }
}

/** What this process admitted, by file identity (path, inode, size, times) and grant. */
const admittedHere = new Map<string, Admitted>();
/** Admissions under way, by the same key. */
const admitting = new Map<string, Promise<Admitted>>();

async function admitFile(wasmPath: string, memoryBytes: number | undefined, cacheDir: string): Promise<Admitted> {
  const bytes = fs.readFileSync(wasmPath);
  const kind = binaryKind(bytes, wasmPath);
  const digest = createHash('sha256').update(bytes).digest('hex');
  const { pages } = memoryLimits(memoryBytes);
  if (kind === 'component') return { digest, kind, ...(await admitComponent(wasmPath, bytes, digest, pages, cacheDir)) };
  const out = path.join(cacheDir, `${digest}.${pages}p.wasm`);
  if (fs.existsSync(out)) return { digest, kind, modulePath: out, cached: true };
  const prepared = memoryBytes === undefined ? bytes : rewriteMemoryMax(bytes, pages, wasmPath);
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, prepared);
  fs.renameSync(tmp, out);
  return { digest, kind, modulePath: out, cached: false };
}
