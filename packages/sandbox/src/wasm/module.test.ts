import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { binaryKind, pagesFor, rewriteMemoryMax } from './module.js';

const hello = readFileSync(new URL('../../../../test/fixtures/guests/hello.wasm', import.meta.url));

async function memoryMax(bytes: Uint8Array): Promise<number | undefined> {
  const mod = await WebAssembly.compile(new Uint8Array(bytes));
  const stub = new Proxy({}, { get: () => () => 0 });
  const inst = await WebAssembly.instantiate(mod, { wasi_snapshot_preview1: stub });
  const mem = inst.exports.memory as WebAssembly.Memory;
  // Grow until it fails: the number of pages reached is the effective maximum.
  let pages = mem.buffer.byteLength / 65536;
  while (pages < 70000) {
    try {
      mem.grow(1);
      pages++;
    } catch {
      return pages;
    }
  }
  return undefined;
}

describe('binaryKind', () => {
  it('tells core modules from components and rejects everything else', () => {
    expect(binaryKind(hello)).toBe('module');
    expect(binaryKind(Uint8Array.from([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]))).toBe('component');
    expect(() => binaryKind(Buffer.from('#!/bin/sh\necho'), 'x.wasm')).toThrow('x.wasm is not a WebAssembly binary: it does not start with the \\0asm header');
  });
});

describe('rewriteMemoryMax', () => {
  it('makes memory.grow fail exactly at the grant', async () => {
    const pages = pagesFor(8 * 2 ** 20);
    expect(await memoryMax(rewriteMemoryMax(hello, pages))).toBe(pages);
  });

  it('rewrites a module of 160 MiB (past V8\'s array length limit, which used to abort the process)', async () => {
    // hello plus a 160 MiB custom section: id 0, size, name, bytes.
    const pad = 160 * 2 ** 20;
    const name = Buffer.from('pad');
    const size = pad + 1 + name.length;
    const leb = [size & 0x7f | 0x80, (size >> 7) & 0x7f | 0x80, (size >> 14) & 0x7f | 0x80, (size >> 21) & 0x7f | 0x80, size >> 28];
    const big = Buffer.concat([hello, Buffer.from([0, ...leb, name.length]), name, Buffer.alloc(pad, 1)]);
    const out = rewriteMemoryMax(big, pagesFor(8 * 2 ** 20));
    expect(out.length).toBeGreaterThan(pad);
    expect(await memoryMax(out)).toBe(pagesFor(8 * 2 ** 20));
  });

  it('refuses a grant below the module minimum instead of clamping silently', () => {
    expect(() => rewriteMemoryMax(hello, 1, 'hello.wasm')).toThrow(/needs at least \d+ pages .* raise grants.memory/);
  });
});
