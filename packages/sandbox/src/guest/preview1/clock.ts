import { Errno, WasiError } from '../core/errno.js';
import { sys, type Preview1Context, type Syscall } from './context.js';

/** Clocks: 0 realtime, 1 monotonic, 2 process CPU time, 3 thread CPU time (the guest is one thread). */
export function now(id: number): bigint {
  if (id === 0) return BigInt(Date.now()) * 1_000_000n;
  if (id === 1) return process.hrtime.bigint();
  if (id === 2 || id === 3) {
    const u = process.cpuUsage();
    return BigInt(u.user + u.system) * 1000n;
  }
  throw new WasiError(Errno.INVAL);
}

export function clockImports(ctx: Preview1Context): Record<string, Syscall> {
  return {
    clock_res_get: sys((id: number, ptr: number) => {
      now(id);
      ctx.mem.view.setBigUint64(ptr, id === 0 ? 1_000_000n : 1000n, true);
    }),
    clock_time_get: sys((id: number, _precision: bigint, ptr: number) => ctx.mem.view.setBigUint64(ptr, now(id), true)),
  };
}
