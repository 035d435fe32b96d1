import { NotWasmError } from '../errors.js';

/** A WASI preview1 core module, or a WASI 0.2 component (component model layer 1). */
export type BinaryKind = 'module' | 'component';

const WASM_PAGE = 65536;

/** Tells a core module from a component by the 8-byte header: `\0asm`, version, layer. */
export function binaryKind(bytes: Uint8Array, file = 'binary'): BinaryKind {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new NotWasmError(file, 'it does not start with the \\0asm header');
  }
  const version = (bytes[4] as number) | ((bytes[5] as number) << 8);
  const layer = (bytes[6] as number) | ((bytes[7] as number) << 8);
  if (layer === 0 && version === 1) return 'module';
  if (layer === 1) return 'component';
  throw new NotWasmError(file, `unknown WebAssembly version ${version} layer ${layer}`);
}

export function pagesFor(bytes: number): number {
  return Math.floor(bytes / WASM_PAGE);
}

interface Limits {
  /** Offset of the limits flag byte. */
  start: number;
  end: number;
  flags: number;
  min: number;
  max: number | undefined;
}

/**
 * Sets the maximum of every memory a core module defines or imports to `maxPages`, so
 * `memory.grow` fails inside the guest (malloc returns NULL) instead of the host running out.
 * A module whose minimum is already above the grant cannot run within it: that is an error, not a
 * silent clamp.
 */
export function rewriteMemoryMax(bytes: Uint8Array, maxPages: number, file = 'binary'): Uint8Array {
  if (binaryKind(bytes, file) !== 'module') throw new NotWasmError(file, 'memory rewriting applies to core modules');
  // Sections are copied as byte slices: a module of 128 MiB or more as one JS number array passes
  // V8's array length limit, a fatal error that takes the whole process (the agent) down.
  const out: Uint8Array[] = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos] as number;
    const [size, sizeEnd] = readU32(bytes, pos + 1);
    const bodyStart = sizeEnd;
    const body = bytes.subarray(bodyStart, bodyStart + size);
    let newBody: Uint8Array = body;
    if (id === 5) newBody = rewriteMemorySection(body, maxPages, file);
    else if (id === 2) newBody = rewriteImportSection(body, maxPages, file);
    out.push(Uint8Array.from([id, ...writeU32(newBody.length)]), newBody);
    pos = bodyStart + size;
  }
  return new Uint8Array(Buffer.concat(out));
}

function rewriteMemorySection(body: Uint8Array, maxPages: number, file: string): Uint8Array {
  const [count, p0] = readU32(body, 0);
  const out: number[] = [...writeU32(count)];
  let p = p0;
  for (let i = 0; i < count; i++) {
    const lim = readLimits(body, p);
    out.push(...writeLimits(lim, maxPages, file));
    p = lim.end;
  }
  return Uint8Array.from(out);
}

function rewriteImportSection(body: Uint8Array, maxPages: number, file: string): Uint8Array {
  const [count, p0] = readU32(body, 0);
  const out: number[] = [...writeU32(count)];
  let p = p0;
  for (let i = 0; i < count; i++) {
    const start = p;
    for (let s = 0; s < 2; s++) {
      const [len, after] = readU32(body, p);
      p = after + len;
    }
    const kind = body[p] as number;
    p++;
    for (let k = start; k < p; k++) out.push(body[k] as number);
    if (kind === 0x02) {
      const lim = readLimits(body, p);
      out.push(...writeLimits(lim, maxPages, file));
      p = lim.end;
      continue;
    }
    const descStart = p;
    if (kind === 0x00) p = readU32(body, p)[1];
    else if (kind === 0x01) p = readLimits(body, p + 1).end;
    else if (kind === 0x03) p += 2;
    else if (kind === 0x04) p = readU32(body, p + 1)[1];
    else throw new NotWasmError(file, `unknown import kind ${kind}`);
    for (let k = descStart; k < p; k++) out.push(body[k] as number);
  }
  return Uint8Array.from(out);
}

function readLimits(b: Uint8Array, p: number): Limits {
  const flags = b[p] as number;
  const [min, afterMin] = readU32(b, p + 1);
  if ((flags & 0x01) === 0) return { start: p, end: afterMin, flags, min, max: undefined };
  const [max, afterMax] = readU32(b, afterMin);
  return { start: p, end: afterMax, flags, min, max };
}

function writeLimits(lim: Limits, maxPages: number, file: string): number[] {
  if (lim.flags & 0x04) throw new NotWasmError(file, 'memory64 is not supported');
  if (lim.min > maxPages) {
    throw new NotWasmError(
      file,
      `it needs at least ${lim.min} pages (${(lim.min * WASM_PAGE) / 2 ** 20} MiB) of linear memory, more than the memory grant allows (${maxPages} pages); raise grants.memory`,
    );
  }
  const max = lim.max === undefined ? maxPages : Math.min(lim.max, maxPages);
  return [(lim.flags & 0x02) | 0x01, ...writeU32(lim.min), ...writeU32(max)];
}

function readU32(b: Uint8Array, p: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = b[p++];
    if (byte === undefined) throw new Error('truncated LEB128');
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result >>> 0, p];
    shift += 7;
  }
}

function writeU32(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}
