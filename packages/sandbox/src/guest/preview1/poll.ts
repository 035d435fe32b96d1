import { sleepSync } from '../sleep.js';
import { now } from './clock.js';
import { sys, type Preview1Context, type Syscall } from './context.js';

/** poll_oneoff: file and stdio descriptors are always ready; only pure clock waits block. */
export function pollImports(ctx: Preview1Context): Record<string, Syscall> {
  return {
    poll_oneoff: sys((inPtr: number, outPtr: number, n: number, nevents: number) => {
      const v = ctx.mem.view;
      let minTimeout: bigint | null = null;
      const ready: { userdata: bigint; type: number }[] = [];
      for (let i = 0; i < n; i++) {
        const s = inPtr + i * 48;
        const userdata = v.getBigUint64(s, true);
        const tag = v.getUint8(s + 8);
        if (tag === 0) {
          const clockId = v.getUint32(s + 16, true);
          let timeout = v.getBigUint64(s + 24, true);
          if ((v.getUint16(s + 40, true) & 1) !== 0) {
            const t = now(clockId === 0 ? 0 : 1);
            timeout = timeout > t ? timeout - t : 0n;
          }
          if (minTimeout === null || timeout < minTimeout) minTimeout = timeout;
          ready.push({ userdata, type: 0 });
        } else {
          ready.push({ userdata, type: tag });
        }
      }
      const fdEvents = ready.filter((r) => r.type !== 0);
      const events = fdEvents.length > 0 ? fdEvents : ready.filter((r) => r.type === 0);
      if (fdEvents.length === 0 && minTimeout !== null && minTimeout > 0n) sleepSync(Number(minTimeout / 1_000_000n));
      events.forEach((ev, i) => {
        const o = outPtr + i * 32;
        v.setBigUint64(o, ev.userdata, true);
        v.setUint16(o + 8, 0, true);
        v.setUint8(o + 10, ev.type);
        v.setBigUint64(o + 16, 0n, true);
        v.setUint16(o + 24, 0, true);
      });
      v.setUint32(nevents, events.length, true);
    }),
  };
}
