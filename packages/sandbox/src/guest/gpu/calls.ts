/**
 * The calls of the `lowcloud:gpu` interface as they travel from the guest's thread to the GPU
 * device thread of its guest host. Status codes are the C header's (`lowcloud/gpu.h`): keep both
 * in step.
 */
export const GpuStatus = {
  ok: 0,
  /** The buffer would take the guest past its GPU memory grant. */
  budget: -1,
  /** Not a handle of this guest, or not one of the kind the call takes. */
  badHandle: -2,
  /** WebGPU refused the call (validation, shader compilation); the message is in last_error. */
  invalid: -3,
  /** No adapter or device could be had. */
  unavailable: -4,
} as const;
export type GpuStatus = (typeof GpuStatus)[keyof typeof GpuStatus];

export type GpuOp =
  | { op: 'adapter_name' }
  | { op: 'last_error' }
  | { op: 'device' }
  | { op: 'buffer_create'; size: number; usage: number }
  | { op: 'buffer_write'; buffer: number; offset: number; data: Uint8Array<ArrayBuffer> }
  | { op: 'buffer_map_read'; buffer: number; offset: number; length: number }
  | { op: 'shader_module_create'; code: string }
  | { op: 'compute_pipeline_create'; shader: number; entry: string }
  | { op: 'bind_group_create'; pipeline: number; group: number; buffers: number[] }
  | { op: 'command_encoder_create' }
  | { op: 'encoder_copy_buffer'; encoder: number; src: number; srcOffset: number; dst: number; dstOffset: number; size: number }
  | { op: 'compute_pass_begin'; encoder: number }
  | { op: 'compute_pass_set_pipeline'; pass: number; pipeline: number }
  | { op: 'compute_pass_set_bind_group'; pass: number; index: number; bindGroup: number }
  | { op: 'compute_pass_dispatch'; pass: number; x: number; y: number; z: number }
  | { op: 'compute_pass_end'; pass: number }
  | { op: 'encoder_finish'; encoder: number }
  | { op: 'queue_submit'; commandBuffers: number[] }
  | { op: 'queue_wait' }
  | { op: 'release'; handle: number };

/**
 * One call: the guest's thread waits on `control[0]` until the device thread stores 1 there, with
 * the status in `control[1]` and a value (a handle, a length) in `control[2]`; bytes coming back
 * (a mapped range, a name) are in `reply`, a SharedArrayBuffer the guest's thread made.
 */
export interface GpuCall {
  call: GpuOp;
  control: Int32Array;
  reply: SharedArrayBuffer | null;
}

/** What the device thread tells the guest host's main thread once, at start. */
export type GpuThreadNote = { kind: 'adapter'; name: string } | { kind: 'unavailable'; reason: string };

/** Calls that run the GPU: bounded by the grant's time budget per submission. */
export const TIMED_OPS: ReadonlySet<GpuOp['op']> = new Set(['queue_submit', 'queue_wait', 'buffer_map_read']);
