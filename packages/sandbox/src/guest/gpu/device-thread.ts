import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { GPU_MAP_MODE_READ, type GPUBindGroup, type GPUBuffer, type GPUCommandBuffer, type GPUCommandEncoder, type GPUComputePassEncoder, type GPUComputePipeline, type GPUDevice, type GPUShaderModule } from '../../common/dawn.js';
import { openAdapter } from '../../common/gpu-adapter.js';
import { type GpuCall, type GpuOp, GpuStatus, type GpuThreadNote } from './calls.js';

/**
 * The GPU device thread of a guest host with a `gpu` grant: it loads Dawn (the `webgpu` package),
 * holds the guest's one device, and answers the guest thread's synchronous calls. It is started
 * after the guest's thread: a thread started after Dawn made its device crashed or hung the
 * process in most runs. Dawn runs on this thread, not the main one, because a submission can block
 * the thread that makes it for as long as the shader runs; the main thread stays free to end the
 * guest when the time budget is spent.
 */
export interface GpuThreadData {
  port: MessagePort;
  /** Bytes of live buffers the guest may hold (its grant). */
  memoryBytes: number;
}

type Resource =
  | { kind: 'buffer'; buffer: GPUBuffer; size: number }
  | { kind: 'shader'; module: GPUShaderModule }
  | { kind: 'pipeline'; pipeline: GPUComputePipeline }
  | { kind: 'bind_group'; group: GPUBindGroup }
  | { kind: 'encoder'; encoder: GPUCommandEncoder }
  | { kind: 'pass'; pass: GPUComputePassEncoder }
  | { kind: 'command_buffer'; buffer: GPUCommandBuffer };

/** A guest's mistake, answered with a status it can handle. */
class CallError extends Error {
  constructor(
    readonly status: GpuStatus,
    message: string,
  ) {
    super(message);
  }
}

const { port, memoryBytes } = workerData as GpuThreadData;
const note = (n: GpuThreadNote) => parentPort?.postMessage(n);
/** The device handle the guest sees; every other handle is numbered after it. */
const DEVICE_HANDLE = 1;

class GuestGpu {
  private readonly resources = new Map<number, Resource>();
  private nextHandle = DEVICE_HANDLE + 1;
  private liveBytes = 0;
  lastError = '';

  constructor(
    readonly device: GPUDevice,
    readonly adapterName: string,
  ) {}

  private add(r: Resource): number {
    const h = this.nextHandle++;
    this.resources.set(h, r);
    return h;
  }

  private get<K extends Resource['kind']>(handle: number, kind: K): Extract<Resource, { kind: K }> {
    const r = this.resources.get(handle);
    if (r === undefined || r.kind !== kind) throw new CallError(GpuStatus.badHandle, `handle ${handle} is not a ${kind.replace('_', ' ')} of this guest`);
    return r as Extract<Resource, { kind: K }>;
  }

  /** Runs `f` and turns what WebGPU found wrong with it (validation, out of memory) into a status. */
  private async checked<T>(f: () => T): Promise<T> {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let value: T | undefined;
    let thrown: unknown = null;
    try {
      value = f();
    } catch (err) {
      thrown = err;
    }
    // Both scopes popped whatever happened, or the next call would see this one's errors.
    const validation = await this.device.popErrorScope();
    const oom = await this.device.popErrorScope();
    const err = validation ?? oom;
    if (err !== null) throw new CallError(GpuStatus.invalid, err.message);
    if (thrown !== null) throw new CallError(GpuStatus.invalid, thrown instanceof Error ? thrown.message : String(thrown));
    return value as T;
  }

  async run(c: GpuOp, reply: SharedArrayBuffer | null): Promise<number> {
    const d = this.device;
    switch (c.op) {
      case 'adapter_name':
        return this.text(this.adapterName, reply);
      case 'last_error':
        return this.text(this.lastError, reply);
      case 'device':
        return DEVICE_HANDLE;
      case 'buffer_create': {
        if (this.liveBytes + c.size > memoryBytes) throw new CallError(GpuStatus.budget, `a buffer of ${c.size} bytes would take the guest's GPU memory to ${this.liveBytes + c.size} bytes, past its gpu grant of ${memoryBytes} bytes`);
        const buffer = await this.checked(() => d.createBuffer({ size: c.size, usage: c.usage }));
        this.liveBytes += c.size;
        return this.add({ kind: 'buffer', buffer, size: c.size });
      }
      case 'buffer_write': {
        const { buffer } = this.get(c.buffer, 'buffer');
        await this.checked(() => d.queue.writeBuffer(buffer, c.offset, c.data));
        return 0;
      }
      case 'buffer_map_read': {
        const { buffer } = this.get(c.buffer, 'buffer');
        if (reply === null) throw new Error('buffer_map_read without a reply buffer');
        this.device.pushErrorScope('validation');
        const mapped = buffer.mapAsync(GPU_MAP_MODE_READ, c.offset, c.length).then(
          () => null,
          (err: unknown) => (err instanceof Error ? err.message : String(err)),
        );
        const validation = await this.device.popErrorScope();
        const failed = await mapped;
        if (validation !== null || failed !== null) throw new CallError(GpuStatus.invalid, validation?.message ?? failed ?? '');
        new Uint8Array(reply).set(new Uint8Array(buffer.getMappedRange(c.offset, c.length)));
        buffer.unmap();
        return c.length;
      }
      case 'shader_module_create': {
        const module = await this.checked(() => d.createShaderModule({ code: c.code }));
        const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
        if (errors.length > 0) throw new CallError(GpuStatus.invalid, errors.map((m) => `${m.lineNum}:${m.linePos}: ${m.message}`).join('; '));
        return this.add({ kind: 'shader', module });
      }
      case 'compute_pipeline_create': {
        const { module } = this.get(c.shader, 'shader');
        const pipeline = await this.checked(() => d.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: c.entry } }));
        return this.add({ kind: 'pipeline', pipeline });
      }
      case 'bind_group_create': {
        const { pipeline } = this.get(c.pipeline, 'pipeline');
        const entries = c.buffers.map((h, binding) => ({ binding, resource: { buffer: this.get(h, 'buffer').buffer } }));
        const group = await this.checked(() => d.createBindGroup({ layout: pipeline.getBindGroupLayout(c.group), entries }));
        return this.add({ kind: 'bind_group', group });
      }
      case 'command_encoder_create':
        return this.add({ kind: 'encoder', encoder: d.createCommandEncoder() });
      case 'encoder_copy_buffer': {
        const { encoder } = this.get(c.encoder, 'encoder');
        const src = this.get(c.src, 'buffer').buffer;
        const dst = this.get(c.dst, 'buffer').buffer;
        encoder.copyBufferToBuffer(src, c.srcOffset, dst, c.dstOffset, c.size);
        return 0;
      }
      case 'compute_pass_begin':
        return this.add({ kind: 'pass', pass: this.get(c.encoder, 'encoder').encoder.beginComputePass() });
      case 'compute_pass_set_pipeline':
        this.get(c.pass, 'pass').pass.setPipeline(this.get(c.pipeline, 'pipeline').pipeline);
        return 0;
      case 'compute_pass_set_bind_group':
        this.get(c.pass, 'pass').pass.setBindGroup(c.index, this.get(c.bindGroup, 'bind_group').group);
        return 0;
      case 'compute_pass_dispatch':
        this.get(c.pass, 'pass').pass.dispatchWorkgroups(c.x, c.y, c.z);
        return 0;
      case 'compute_pass_end':
        this.get(c.pass, 'pass').pass.end();
        this.resources.delete(c.pass);
        return 0;
      case 'encoder_finish': {
        const { encoder } = this.get(c.encoder, 'encoder');
        const buffer = await this.checked(() => encoder.finish());
        this.resources.delete(c.encoder);
        return this.add({ kind: 'command_buffer', buffer });
      }
      case 'queue_submit': {
        const buffers = c.commandBuffers.map((h) => this.get(h, 'command_buffer').buffer);
        await this.checked(() => d.queue.submit(buffers));
        for (const h of c.commandBuffers) this.resources.delete(h);
        return 0;
      }
      case 'queue_wait':
        await d.queue.onSubmittedWorkDone();
        return 0;
      case 'release': {
        const r = this.resources.get(c.handle);
        if (r === undefined) throw new CallError(GpuStatus.badHandle, `handle ${c.handle} is not one of this guest's`);
        if (r.kind === 'buffer') {
          r.buffer.destroy();
          this.liveBytes -= r.size;
        }
        this.resources.delete(c.handle);
        return 0;
      }
    }
  }

  private text(s: string, reply: SharedArrayBuffer | null): number {
    const bytes = new TextEncoder().encode(s);
    if (reply !== null) new Uint8Array(reply).set(bytes.subarray(0, reply.byteLength));
    return bytes.length;
  }
}

function answer(call: GpuCall, status: GpuStatus, value: number): void {
  Atomics.store(call.control, 1, status);
  Atomics.store(call.control, 2, value);
  Atomics.store(call.control, 0, 1);
  Atomics.notify(call.control, 0);
}

async function open(): Promise<GuestGpu | string> {
  const opened = await openAdapter();
  if (typeof opened === 'string') return opened;
  try {
    return new GuestGpu(await opened.adapter.requestDevice(), opened.name);
  } catch (err) {
    return `the adapter gave no device: ${err instanceof Error ? err.message : String(err)}`;
  }
}

const opened = open();
void opened.then((g) => note(typeof g === 'string' ? { kind: 'unavailable', reason: g } : { kind: 'adapter', name: g.adapterName }));

// One call at a time, in order: the guest's thread waits for each answer before it makes the next.
let queue: Promise<void> = Promise.resolve();
port.on('message', (call: GpuCall) => {
  queue = queue.then(async () => {
    const gpu = await opened;
    if (typeof gpu === 'string') {
      answer(call, GpuStatus.unavailable, 0);
      return;
    }
    try {
      answer(call, GpuStatus.ok, await gpu.run(call.call, call.reply));
    } catch (err) {
      gpu.lastError = err instanceof Error ? err.message : String(err);
      answer(call, err instanceof CallError ? err.status : GpuStatus.invalid, 0);
    }
  });
});
