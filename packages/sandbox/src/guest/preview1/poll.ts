import { sleepSync } from '../../common/sleep.js';
import { now } from './clock.js';
import { sys, type Preview1Context, type Syscall } from './context.js';

/**
 * poll_oneoff: file and stdio descriptors are always ready; only pure clock waits block - the
 * thread (sleepSync), or, given `wait` (a shared guest host with JSPI), only this guest: the call
 * then returns a promise and the instance is suspended until it settles.
 */
export function pollImports(ctx: Preview1Context, wait?: (ms: number) => Promise<void>, sleep: (ms: number) => void = sleepSync): Record<string, Syscall> {
  return {
    // Two passes over the guest's subscriptions, nothing kept per subscription on the host heap
    // (a list of them let a guest's million-entry call exhaust the guest host's heap).
    poll_oneoff: sys((inPtr: number, outPtr: number, n: number, nevents: number) => {
      const v = ctx.mem.view;
      let minTimeout: bigint | null = null;
      let anyFd = false;
      for (let i = 0; i < n; i++) {
        const s = inPtr + i * 48;
        if (v.getUint8(s + 8) !== 0) {
          anyFd = true;
          continue;
        }
        const clockId = v.getUint32(s + 16, true);
        let timeout = v.getBigUint64(s + 24, true);
        if ((v.getUint16(s + 40, true) & 1) !== 0) {
          const t = now(clockId === 0 ? 0 : 1);
          timeout = timeout > t ? timeout - t : 0n;
        }
        if (minTimeout === null || timeout < minTimeout) minTimeout = timeout;
      }
      // File and stdio descriptors are ready at once; otherwise every clock fires after the shortest wait.
      const ms = !anyFd && minTimeout !== null && minTimeout > 0n ? Number(minTimeout / 1_000_000n) : 0;
      if (wait !== undefined) return wait(ms).then(() => events(inPtr, outPtr, n, nevents, anyFd));
      sleep(ms);
      return events(inPtr, outPtr, n, nevents, anyFd);
    }),
  };

  /** The events of a poll whose wait is over (the view again: the memory may have grown meanwhile). */
  function events(inPtr: number, outPtr: number, n: number, nevents: number, anyFd: boolean): number {
    const v = ctx.mem.view;
    let count = 0;
    for (let i = 0; i < n; i++) {
      const s = inPtr + i * 48;
      const type = v.getUint8(s + 8);
      if ((type !== 0) !== anyFd) continue;
      const o = outPtr + count++ * 32;
      v.setBigUint64(o, v.getBigUint64(s, true), true);
      v.setUint16(o + 8, 0, true);
      v.setUint8(o + 10, type);
      v.setBigUint64(o + 16, 0n, true);
      v.setUint16(o + 24, 0, true);
    }
    v.setUint32(nevents, count, true);
    return 0;
  }
}
