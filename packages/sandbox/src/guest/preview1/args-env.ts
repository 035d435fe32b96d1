import { sys, type Preview1Context, type Syscall } from './context.js';

/** args_* and environ_*: NUL-terminated strings, as the guest was started with. */
export function argsEnvImports(ctx: Preview1Context, argv: string[], env: Record<string, string>): Record<string, Syscall> {
  const args = argv.map((a) => Buffer.from(`${a}\0`));
  const vars = Object.entries(env).map(([k, v]) => Buffer.from(`${k}=${v}\0`));
  const sizes = (list: Buffer[], countPtr: number, sizePtr: number) => {
    ctx.mem.view.setUint32(countPtr, list.length, true);
    ctx.mem.view.setUint32(sizePtr, list.reduce((s, b) => s + b.length, 0), true);
  };
  const get = (list: Buffer[], ptrs: number, buf: number) => {
    let off = buf;
    list.forEach((b, i) => {
      ctx.mem.view.setUint32(ptrs + i * 4, off, true);
      ctx.mem.bytes(off, b.length).set(b);
      off += b.length;
    });
  };
  return {
    args_sizes_get: sys((c: number, s: number) => sizes(args, c, s)),
    args_get: sys((p: number, b: number) => get(args, p, b)),
    environ_sizes_get: sys((c: number, s: number) => sizes(vars, c, s)),
    environ_get: sys((p: number, b: number) => get(vars, p, b)),
  };
}
