/**
 * The part of WebGPU (as the `webgpu` package, Dawn, gives it to Node.js) that lowcloud uses,
 * declared here: `webgpu` is an optional dependency, so neither it nor its types may be needed to
 * typecheck or build. Names and shapes are WebGPU's (https://www.w3.org/TR/webgpu/); only the
 * members lowcloud calls.
 */
export interface DawnModule {
  /** Dawn's entry: a GPU object for the given Dawn toggles (e.g. `backend=opengl`). */
  create(flags: string[]): { requestAdapter(options: { featureLevel: 'core' | 'compatibility' }): Promise<GPUAdapter | null> };
  /** GPUBufferUsage, GPUMapMode and the other WebGPU globals. */
  globals: object;
}

export interface GPUAdapter {
  readonly info: { vendor: string; device: string; description: string };
  requestDevice(): Promise<GPUDevice>;
}

export interface GPUError {
  readonly message: string;
}

export interface GPUDevice {
  readonly queue: GPUQueue;
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<GPUError | null>;
  createBuffer(descriptor: { size: number; usage: number }): GPUBuffer;
  createShaderModule(descriptor: { code: string }): GPUShaderModule;
  createComputePipeline(descriptor: { layout: 'auto'; compute: { module: GPUShaderModule; entryPoint: string } }): GPUComputePipeline;
  createBindGroup(descriptor: { layout: GPUBindGroupLayout; entries: { binding: number; resource: { buffer: GPUBuffer } }[] }): GPUBindGroup;
  createCommandEncoder(): GPUCommandEncoder;
}

export interface GPUQueue {
  writeBuffer(buffer: GPUBuffer, offset: number, data: Uint8Array<ArrayBuffer>): void;
  submit(commandBuffers: GPUCommandBuffer[]): void;
  onSubmittedWorkDone(): Promise<void>;
}

export interface GPUBuffer {
  mapAsync(mode: number, offset: number, size: number): Promise<void>;
  getMappedRange(offset: number, size: number): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}

/** GPUMapMode.READ (the global is Dawn's; the value is WebGPU's). */
export const GPU_MAP_MODE_READ = 0x0001;

export interface GPUShaderModule {
  getCompilationInfo(): Promise<{ readonly messages: readonly { type: 'error' | 'warning' | 'info'; lineNum: number; linePos: number; message: string }[] }>;
}

export interface GPUBindGroupLayout {
  readonly __brand: 'GPUBindGroupLayout';
}

export interface GPUComputePipeline {
  getBindGroupLayout(index: number): GPUBindGroupLayout;
}

export interface GPUBindGroup {
  readonly __brand: 'GPUBindGroup';
}

export interface GPUCommandBuffer {
  readonly __brand: 'GPUCommandBuffer';
}

export interface GPUCommandEncoder {
  copyBufferToBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void;
  beginComputePass(): GPUComputePassEncoder;
  finish(): GPUCommandBuffer;
}

export interface GPUComputePassEncoder {
  setPipeline(pipeline: GPUComputePipeline): void;
  setBindGroup(index: number, group: GPUBindGroup): void;
  dispatchWorkgroups(x: number, y: number, z: number): void;
  end(): void;
}
