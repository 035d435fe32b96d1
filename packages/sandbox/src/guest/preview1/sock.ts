import { Errno, WasiError } from '../core/errno.js';
import { sys, type Preview1Context, type Syscall } from './context.js';

/** preview1 guests are never handed a socket, so every descriptor is "not a socket" (or not open). */
export function sockImports(ctx: Preview1Context): Record<string, Syscall> {
  const notSock = (fd: number) => {
    ctx.entry(fd);
    throw new WasiError(Errno.NOTSOCK);
  };
  return {
    sock_accept: sys((fd: number) => notSock(fd)),
    sock_recv: sys((fd: number) => notSock(fd)),
    sock_send: sys((fd: number) => notSock(fd)),
    sock_shutdown: sys((fd: number) => notSock(fd)),
  };
}
