import { type GpuOp, GpuStatus } from './calls.js';
import type { GpuCaller } from './caller.js';

/** The WIT interface's error variant (wit/lowcloud-gpu/gpu.wit), as jco lowers it. */
type GpuError = { tag: 'budget' | 'bad-handle' | 'invalid' | 'unavailable'; val: string };
type Result<T> = { tag: 'ok'; val: T } | { tag: 'err'; val: GpuError };
type BufferUsage = Record<'mapRead' | 'mapWrite' | 'copySrc' | 'copyDst' | 'index' | 'vertex' | 'uniform' | 'storage', boolean>;

const ERROR_TAGS: Record<number, GpuError['tag']> = {
  [GpuStatus.budget]: 'budget',
  [GpuStatus.badHandle]: 'bad-handle',
  [GpuStatus.invalid]: 'invalid',
  [GpuStatus.unavailable]: 'unavailable',
};
/** GPUBufferUsage bits in the order of the WIT flags (WebGPU's values: bit i is the i-th flag). */
const USAGE_BITS: (keyof BufferUsage)[] = ['mapRead', 'mapWrite', 'copySrc', 'copyDst', 'index', 'vertex', 'uniform', 'storage'];

/**
 * `lowcloud:gpu/gpu` for WASI 0.2 components, as jco's bindings call it: resources are classes whose
 * objects hold the device thread's handle, methods answer `result<T, error>` as {tag, val}. The same
 * calls (caller.ts) and the same enforcement as the core-module binding: a buffer past the grant is
 * error.budget; a submission past the time budget throws GpuTimeBudgetExceeded, an Error, which jco
 * lets through (only a thrown payload is an err result), so the guest ends with a gpu violation.
 * Dropping a resource releases its handle (a buffer stops counting against the grant).
 */
export function gpuComponentImports(call: GpuCaller): Record<string, unknown> {
  /** A handle of the guest's device thread; released when the guest drops the resource (jco calls Symbol.dispose). */
  class Handle {
    /** Ended (a pass) or finished (an encoder): the device thread has let go of it already. */
    gone = false;
    constructor(readonly handle: number) {}
    [Symbol.dispose](): void {
      if (!this.gone) call({ op: 'release', handle: this.handle });
    }
  }
  class ShaderModule extends Handle {}
  class ComputePipeline extends Handle {}
  class BindGroup extends Handle {}
  class CommandBuffer extends Handle {}

  const failed = (status: number): Result<never> => ({ tag: 'err', val: { tag: ERROR_TAGS[status] ?? 'invalid', val: text({ op: 'last_error' }) } });
  /** A call whose value is a handle, made into a resource. */
  const made = <T>(op: GpuOp, make: (handle: number) => T): Result<T> => {
    const r = call(op);
    return r.status === GpuStatus.ok ? { tag: 'ok', val: make(r.value) } : failed(r.status);
  };
  const done = (op: GpuOp): Result<undefined> => {
    const r = call(op);
    return r.status === GpuStatus.ok ? { tag: 'ok', val: undefined } : failed(r.status);
  };
  /** A string of any length: asked once for its length, then for all of it. */
  function text(op: GpuOp): string {
    const first = call(op, 256);
    const all = first.value > 256 ? call(op, first.value) : first;
    return new TextDecoder().decode(all.reply?.subarray(0, all.value));
  }
  /** A u64 from the guest as a number; past 2^53 WebGPU refuses it as it would refuse the exact value. */
  const n = (v: bigint): number => (v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));
  const invalid = (message: string): Result<never> => ({ tag: 'err', val: { tag: 'invalid', val: message } });

  class Buffer extends Handle {
    write(offset: bigint, data: Uint8Array<ArrayBuffer>): Result<undefined> {
      return done({ op: 'buffer_write', buffer: this.handle, offset: n(offset), data });
    }
    mapRead(offset: bigint, length: bigint): Result<Uint8Array> {
      // The bytes come back through a buffer of this size: no more than any buffer under the grant holds.
      if (length > BigInt(call.maxReplyBytes)) return invalid(`map-read of ${length} bytes: more than the gpu grant's memory (${call.maxReplyBytes} bytes), which bounds every buffer`);
      const r = call({ op: 'buffer_map_read', buffer: this.handle, offset: n(offset), length: Number(length) }, Math.max(Number(length), 1));
      return r.status === GpuStatus.ok ? { tag: 'ok', val: (r.reply ?? new Uint8Array(0)).slice(0, Number(length)) } : failed(r.status);
    }
  }
  class ComputePass extends Handle {
    setPipeline(pipeline: ComputePipeline): Result<undefined> {
      return done({ op: 'compute_pass_set_pipeline', pass: this.handle, pipeline: pipeline.handle });
    }
    setBindGroup(index: number, group: BindGroup): Result<undefined> {
      return done({ op: 'compute_pass_set_bind_group', pass: this.handle, index, bindGroup: group.handle });
    }
    dispatchWorkgroups(x: number, y: number, z: number): Result<undefined> {
      return done({ op: 'compute_pass_dispatch', pass: this.handle, x, y, z });
    }
    end(): Result<undefined> {
      const r = done({ op: 'compute_pass_end', pass: this.handle });
      this.gone ||= r.tag === 'ok';
      return r;
    }
  }
  class CommandEncoder extends Handle {
    beginComputePass(): Result<ComputePass> {
      return made({ op: 'compute_pass_begin', encoder: this.handle }, (h) => new ComputePass(h));
    }
    copyBufferToBuffer(src: Buffer, srcOffset: bigint, dst: Buffer, dstOffset: bigint, size: bigint): Result<undefined> {
      return done({ op: 'encoder_copy_buffer', encoder: this.handle, src: src.handle, srcOffset: n(srcOffset), dst: dst.handle, dstOffset: n(dstOffset), size: n(size) });
    }
    finish(): Result<CommandBuffer> {
      const r = made({ op: 'encoder_finish', encoder: this.handle }, (h) => new CommandBuffer(h));
      this.gone ||= r.tag === 'ok';
      return r;
    }
  }
  class Device extends Handle {
    override [Symbol.dispose](): void {
      // The guest's one device lives as long as the guest: dropping this resource leaves it be.
    }
    createBuffer(size: bigint, usage: BufferUsage): Result<Buffer> {
      const bits = USAGE_BITS.reduce((acc, flag, i) => (usage[flag] ? acc | (1 << i) : acc), 0);
      return made({ op: 'buffer_create', size: n(size), usage: bits }, (h) => new Buffer(h));
    }
    createShaderModule(wgsl: string): Result<ShaderModule> {
      return made({ op: 'shader_module_create', code: wgsl }, (h) => new ShaderModule(h));
    }
    createComputePipeline(module: ShaderModule, entryPoint: string): Result<ComputePipeline> {
      return made({ op: 'compute_pipeline_create', shader: module.handle, entry: entryPoint }, (h) => new ComputePipeline(h));
    }
    createBindGroup(pipeline: ComputePipeline, group: number, buffers: Buffer[]): Result<BindGroup> {
      return made({ op: 'bind_group_create', pipeline: pipeline.handle, group, buffers: buffers.map((b) => b.handle) }, (h) => new BindGroup(h));
    }
    createCommandEncoder(): Result<CommandEncoder> {
      return made({ op: 'command_encoder_create' }, (h) => new CommandEncoder(h));
    }
    /** The command buffers are the guest's no more (own handles): jco drops them without a dispose. */
    queueSubmit(buffers: CommandBuffer[]): Result<undefined> {
      return done({ op: 'queue_submit', commandBuffers: buffers.map((b) => b.handle) });
    }
    queueWait(): Result<undefined> {
      return done({ op: 'queue_wait' });
    }
  }

  return {
    Buffer, ShaderModule, ComputePipeline, BindGroup, CommandBuffer, ComputePass, CommandEncoder, Device,
    adapterName: () => text({ op: 'adapter_name' }),
    getDevice: () => made({ op: 'device' }, (h) => new Device(h)),
  };
}
