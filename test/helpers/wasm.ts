import { writeFileSync } from 'node:fs';

const leb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
};
const section = (id: number, body: number[]): number[] => [id, ...leb(body.length), ...body];
const name = (s: string): number[] => [...leb(s.length), ...Buffer.from(s)];

/**
 * A preview1 guest whose module carries a passive data segment of `mib` MiB and one page of linear
 * memory; `_start` spins until it is killed. The segment never enters linear memory (so the memory
 * grant's linear-memory cap does not stop it), but the guest host must hold the module's bytes, so
 * its resident memory passes grant + host overhead: a real guest going past its memory grant.
 * Generated, not committed (64 MiB of the same byte).
 */
export function writeMemoryHogModule(file: string, mib: number): void {
  const size = mib * 2 ** 20;
  const head = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [1, 0x60, 0, 0]), // one type: () -> ()
    ...section(3, [1, 0]), // one function of it
    ...section(5, [1, 0, 1]), // memory: 1 page, no maximum (the sandbox rewrites it to the grant)
    ...section(7, [2, ...name('memory'), 2, 0, ...name('_start'), 0, 0]),
    ...section(12, [1]), // data count: 1 (passive segments need it)
    ...section(10, [1, 7, 0, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b]), // _start: loop { br 0 }
  ];
  const segment = [1, 1, ...leb(size)]; // one segment, passive, `size` bytes
  writeFileSync(file, Buffer.concat([Buffer.from(head), Buffer.from([11, ...leb(segment.length + size), ...segment]), Buffer.alloc(size, 7)]));
}

/**
 * `wasm` with a custom section of `bytes` bytes appended (ignored by every runtime): the same program
 * in a binary big enough to be uploaded in several chunks.
 */
export function withPadding(wasm: Buffer, bytes: number): Buffer {
  const body = [...name('lowcloud-test-padding')];
  return Buffer.concat([wasm, Buffer.from([0, ...leb(body.length + bytes), ...body]), Buffer.alloc(bytes, 0x5a)]);
}
