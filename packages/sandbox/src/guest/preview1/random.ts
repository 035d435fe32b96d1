import { randomFillSync } from 'node:crypto';
import { sys, type Preview1Context, type Syscall } from './context.js';

export function randomImports(ctx: Preview1Context): Record<string, Syscall> {
  return {
    // randomFillSync takes at most 2^31-1 bytes per call.
    random_get: sys((ptr: number, len: number) => {
      for (let off = 0; off < len; off += 0x4000_0000) randomFillSync(ctx.mem.bytes(ptr + off, Math.min(0x4000_0000, len - off)));
    }),
  };
}
