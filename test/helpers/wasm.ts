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

/** Signed LEB128 (i32.const / i64.const immediates). */
const sleb = (v: bigint): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
};

/**
 * A preview1 guest that holds `ballastMiB` in a passive data segment (resident in its guest host
 * from the start, as in writeMemoryHogModule), sleeps `sleepSeconds` (poll_oneoff on the monotonic
 * clock), then grows its linear memory to `growMiB` and touches every page, then sleeps forever:
 * a guest that passes its memory grant only some time after it started (after an agent restart).
 */
export function writeLateHogModule(file: string, opts: { ballastMiB: number; sleepSeconds: number; growMiB: number }): void {
  const ballast = opts.ballastMiB * 2 ** 20;
  const pages = Math.floor((opts.growMiB * 2 ** 20) / 65536) - 1;
  const i32 = (n: number) => [0x41, ...sleb(BigInt(n))];
  const sleep = [...i32(0), ...i32(64), ...i32(1), ...i32(96), 0x10, 0, 0x1a]; // poll_oneoff(subs 0, events 64, 1, nevents 96); drop
  const body = [0, ...sleep, ...i32(pages), 0x40, 0, 0x1a, ...i32(65536), ...i32(1), ...i32(pages * 65536), 0xfc, 0x0b, 0, 0x03, 0x40, ...sleep, 0x0c, 0, 0x0b, 0x0b];
  // One clock subscription: userdata 0, tag 0 (clock), id 1 (monotonic) at 16, timeout (ns) at 24, relative.
  const sub = Buffer.alloc(48);
  sub.writeUInt32LE(1, 16);
  sub.writeBigUInt64LE(BigInt(opts.sleepSeconds) * 1_000_000_000n, 24);
  const head = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [2, 0x60, 0, 0, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f]),
    ...section(2, [1, ...name('wasi_snapshot_preview1'), ...name('poll_oneoff'), 0, 1]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0, 1]),
    ...section(7, [2, ...name('memory'), 2, 0, ...name('_start'), 0, 1]),
    ...section(12, [2]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ];
  const active = [0, 0x41, 0, 0x0b, ...leb(48), ...sub];
  const passive = [1, ...leb(ballast)];
  const data = [2, ...active, ...passive];
  writeFileSync(file, Buffer.concat([Buffer.from(head), Buffer.from([11, ...leb(data.length + ballast), ...data]), Buffer.alloc(ballast, 7)]));
}
