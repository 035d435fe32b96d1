import type { GuestMemory } from '../preview1/memory.js';
import { type GpuOp, GpuStatus } from './calls.js';
import type { GpuCaller } from './caller.js';

/** The import module name of the GPU interface for core (preview1) modules: `lowcloud/gpu.h`. */
export const GPU_IMPORT_MODULE = 'lowcloud:gpu';

/**
 * The `lowcloud:gpu` imports of a preview1 guest (the binding `lowcloud/gpu.h` declares): pointers
 * and lengths into the guest's memory around the calls of caller.ts; a status comes back as is.
 */
export function gpuImports(mem: GuestMemory, call: GpuCaller): Record<string, (...args: number[]) => number> {
  const bytes = (ptr: number, len: number) => mem.all.slice(ptr, ptr + len);
  const text = (ptr: number, len: number) => new TextDecoder().decode(mem.all.subarray(ptr, ptr + len));
  const handles = (ptr: number, count: number) => Array.from({ length: count }, (_, i) => mem.view.getUint32(ptr + 4 * i, true));
  /** A call whose value is a handle written to `out`. */
  const made = (op: GpuOp, out: number): number => {
    const r = call(op);
    if (r.status === GpuStatus.ok) mem.view.setUint32(out, r.value, true);
    return r.status;
  };
  /** A call whose value is a string's full length; up to `len` of its bytes go to `ptr`. */
  const told = (op: GpuOp, ptr: number, len: number): number => {
    const r = call(op, Math.max(len, 1));
    if (r.status !== GpuStatus.ok) return r.status;
    if (r.reply !== null) mem.all.set(r.reply.subarray(0, Math.min(len, r.value)), ptr);
    return r.value;
  };
  return {
    adapter_name: (ptr, len) => told({ op: 'adapter_name' }, ptr, len),
    last_error: (ptr, len) => told({ op: 'last_error' }, ptr, len),
    device: (out) => made({ op: 'device' }, out),
    buffer_create: (_device, size, usage, out) => made({ op: 'buffer_create', size: size >>> 0, usage: usage >>> 0 }, out),
    buffer_write: (_device, buffer, offset, ptr, len) => call({ op: 'buffer_write', buffer, offset: offset >>> 0, data: bytes(ptr, len >>> 0) }).status,
    buffer_map_read: (buffer, offset, ptr, len) => {
      // Where the bytes go must be the guest's own memory: checked before the call, not by the copy after it.
      if ((ptr >>> 0) + (len >>> 0) > mem.all.length) return GpuStatus.invalid;
      const r = call({ op: 'buffer_map_read', buffer, offset: offset >>> 0, length: len >>> 0 }, Math.max(len >>> 0, 1));
      if (r.status === GpuStatus.ok && r.reply !== null) mem.all.set(r.reply.subarray(0, len >>> 0), ptr);
      return r.status;
    },
    shader_module_create: (_device, ptr, len, out) => made({ op: 'shader_module_create', code: text(ptr, len >>> 0) }, out),
    compute_pipeline_create: (_device, shader, ptr, len, out) => made({ op: 'compute_pipeline_create', shader, entry: text(ptr, len >>> 0) }, out),
    bind_group_create: (_device, pipeline, group, ptr, count, out) => made({ op: 'bind_group_create', pipeline, group: group >>> 0, buffers: handles(ptr, count >>> 0) }, out),
    command_encoder_create: (_device, out) => made({ op: 'command_encoder_create' }, out),
    encoder_copy_buffer: (encoder, src, srcOffset, dst, dstOffset, size) => call({ op: 'encoder_copy_buffer', encoder, src, srcOffset: srcOffset >>> 0, dst, dstOffset: dstOffset >>> 0, size: size >>> 0 }).status,
    compute_pass_begin: (encoder, out) => made({ op: 'compute_pass_begin', encoder }, out),
    compute_pass_set_pipeline: (pass, pipeline) => call({ op: 'compute_pass_set_pipeline', pass, pipeline }).status,
    compute_pass_set_bind_group: (pass, index, bindGroup) => call({ op: 'compute_pass_set_bind_group', pass, index: index >>> 0, bindGroup }).status,
    compute_pass_dispatch: (pass, x, y, z) => call({ op: 'compute_pass_dispatch', pass, x: x >>> 0, y: y >>> 0, z: z >>> 0 }).status,
    compute_pass_end: (pass) => call({ op: 'compute_pass_end', pass }).status,
    encoder_finish: (encoder, out) => made({ op: 'encoder_finish', encoder }, out),
    queue_submit: (_device, ptr, count) => call({ op: 'queue_submit', commandBuffers: handles(ptr, count >>> 0) }).status,
    queue_wait: () => call({ op: 'queue_wait' }).status,
    release: (handle) => call({ op: 'release', handle }).status,
  };
}
