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

  it('refuses a grant below the module minimum instead of clamping silently', () => {
    expect(() => rewriteMemoryMax(hello, 1, 'hello.wasm')).toThrow(/needs at least \d+ pages .* raise grants.memory/);
  });
});
