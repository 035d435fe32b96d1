import { Errno } from '../core/errno.js';
import { GuestExit } from '../exit.js';
import { sys, type Syscall } from './context.js';

export function procImports(): Record<string, Syscall> {
  return {
    proc_exit: (code: number) => {
      throw new GuestExit(code);
    },
    proc_raise: sys(() => Errno.NOSYS),
    sched_yield: sys(() => undefined),
  };
}
