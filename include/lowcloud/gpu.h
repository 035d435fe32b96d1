/*
 * lowcloud/gpu.h - WebGPU compute for lowcloud guests (WASI preview1 core modules).
 *
 * A compute subset shaped after wasi:webgpu, as synchronous calls imported from the module
 * "lowcloud:gpu". The process needs a gpu grant (grants.gpu: { memory: 64MiB } in the infra file,
 * or `lowcloud run --gpu-memory 64MiB`); a module that imports any of these without one does not
 * start. Build with Debian's toolchain:
 *
 *   clang --target=wasm32-wasi -O2 -I <lowcloud>/include -o app.wasm app.c
 *
 * Every call returns LC_GPU_OK (0) or a negative LC_GPU_ERR_*; calls that make something write its
 * handle to *out. After an error, lc_gpu_last_error() says what went wrong. Handles are this
 * guest's own; the device and everything made on it are destroyed when the guest ends.
 *
 * Enforcement: the sum of a guest's live buffers may not pass its grant (lc_gpu_buffer_create
 * answers LC_GPU_ERR_BUDGET and nothing is made); lc_gpu_queue_submit, lc_gpu_queue_wait and
 * lc_gpu_buffer_map_read may each run at most the grant's time budget (submitSeconds, default 10):
 * past it the guest is ended with a gpu violation.
 *
 * WebGPU's rules apply (https://www.w3.org/TR/webgpu/): e.g. write and copy offsets and sizes are
 * multiples of 4, a buffer read with lc_gpu_buffer_map_read needs LC_GPU_BUFFER_MAP_READ usage
 * (and then only LC_GPU_BUFFER_COPY_DST besides it), its offset a multiple of 8.
 */
#ifndef LOWCLOUD_GPU_H
#define LOWCLOUD_GPU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t lc_gpu_handle;

#define LC_GPU_OK 0
/** The buffer would take the guest's live GPU buffers past its gpu grant. */
#define LC_GPU_ERR_BUDGET (-1)
/** Not a handle of this guest, or not of the kind the call takes. */
#define LC_GPU_ERR_HANDLE (-2)
/** WebGPU refused the call (validation, WGSL compilation): see lc_gpu_last_error. */
#define LC_GPU_ERR_INVALID (-3)
/** No adapter or device could be had on this machine. */
#define LC_GPU_ERR_UNAVAILABLE (-4)

/* GPUBufferUsage flags (WebGPU's values). */
#define LC_GPU_BUFFER_MAP_READ 0x0001u
#define LC_GPU_BUFFER_MAP_WRITE 0x0002u
#define LC_GPU_BUFFER_COPY_SRC 0x0004u
#define LC_GPU_BUFFER_COPY_DST 0x0008u
#define LC_GPU_BUFFER_UNIFORM 0x0040u
#define LC_GPU_BUFFER_STORAGE 0x0080u

#define LC_GPU_IMPORT(name) __attribute__((import_module("lowcloud:gpu"), import_name(#name)))

/** The adapter's name (e.g. "Dawn OpenGL llvmpipe ..."): writes up to len bytes (no NUL), returns its full length. */
LC_GPU_IMPORT(adapter_name) int32_t lc_gpu_adapter_name(char *buf, uint32_t len);
/** What the last failed call found wrong: writes up to len bytes (no NUL), returns its full length. */
LC_GPU_IMPORT(last_error) int32_t lc_gpu_last_error(char *buf, uint32_t len);
/** The guest's one device (asking again gives the same one). */
LC_GPU_IMPORT(device) int32_t lc_gpu_device(lc_gpu_handle *out);

/** A buffer of size bytes (GPUBufferUsage flags), zero-filled; counts against the grant until released. */
LC_GPU_IMPORT(buffer_create) int32_t lc_gpu_buffer_create(lc_gpu_handle device, uint32_t size, uint32_t usage, lc_gpu_handle *out);
/** queue.writeBuffer: len bytes from data into the buffer at offset (buffer needs COPY_DST). */
LC_GPU_IMPORT(buffer_write) int32_t lc_gpu_buffer_write(lc_gpu_handle device, lc_gpu_handle buffer, uint32_t offset, const void *data, uint32_t len);
/** mapAsync(READ) + getMappedRange + unmap: len bytes at offset into data, after all submitted work. */
LC_GPU_IMPORT(buffer_map_read) int32_t lc_gpu_buffer_map_read(lc_gpu_handle buffer, uint32_t offset, void *data, uint32_t len);

/** A shader module from WGSL source (len bytes, no NUL needed); compilation errors are LC_GPU_ERR_INVALID. */
LC_GPU_IMPORT(shader_module_create) int32_t lc_gpu_shader_module_create(lc_gpu_handle device, const char *wgsl, uint32_t len, lc_gpu_handle *out);
/** A compute pipeline with layout "auto" running entry point `entry` (len bytes) of the shader. */
LC_GPU_IMPORT(compute_pipeline_create) int32_t lc_gpu_compute_pipeline_create(lc_gpu_handle device, lc_gpu_handle shader, const char *entry, uint32_t len, lc_gpu_handle *out);
/** A bind group for @group(group) of the pipeline: binding i is the whole of buffers[i]. */
LC_GPU_IMPORT(bind_group_create) int32_t lc_gpu_bind_group_create(lc_gpu_handle device, lc_gpu_handle pipeline, uint32_t group, const lc_gpu_handle *buffers, uint32_t count, lc_gpu_handle *out);

LC_GPU_IMPORT(command_encoder_create) int32_t lc_gpu_command_encoder_create(lc_gpu_handle device, lc_gpu_handle *out);
LC_GPU_IMPORT(encoder_copy_buffer) int32_t lc_gpu_encoder_copy_buffer(lc_gpu_handle encoder, lc_gpu_handle src, uint32_t src_offset, lc_gpu_handle dst, uint32_t dst_offset, uint32_t size);
LC_GPU_IMPORT(compute_pass_begin) int32_t lc_gpu_compute_pass_begin(lc_gpu_handle encoder, lc_gpu_handle *out);
LC_GPU_IMPORT(compute_pass_set_pipeline) int32_t lc_gpu_compute_pass_set_pipeline(lc_gpu_handle pass, lc_gpu_handle pipeline);
LC_GPU_IMPORT(compute_pass_set_bind_group) int32_t lc_gpu_compute_pass_set_bind_group(lc_gpu_handle pass, uint32_t index, lc_gpu_handle bind_group);
LC_GPU_IMPORT(compute_pass_dispatch) int32_t lc_gpu_compute_pass_dispatch(lc_gpu_handle pass, uint32_t x, uint32_t y, uint32_t z);
/** Ends the pass (its handle is gone afterwards). */
LC_GPU_IMPORT(compute_pass_end) int32_t lc_gpu_compute_pass_end(lc_gpu_handle pass);
/** A command buffer from the encoder (the encoder's handle is gone afterwards). */
LC_GPU_IMPORT(encoder_finish) int32_t lc_gpu_encoder_finish(lc_gpu_handle encoder, lc_gpu_handle *out);
/** Submits command buffers (their handles are gone afterwards). */
LC_GPU_IMPORT(queue_submit) int32_t lc_gpu_queue_submit(lc_gpu_handle device, const lc_gpu_handle *command_buffers, uint32_t count);
/** Waits until all submitted work is done (onSubmittedWorkDone). */
LC_GPU_IMPORT(queue_wait) int32_t lc_gpu_queue_wait(lc_gpu_handle device);
/** Drops a handle; a buffer is destroyed and stops counting against the grant. */
LC_GPU_IMPORT(release) int32_t lc_gpu_release(lc_gpu_handle handle);

#undef LC_GPU_IMPORT

#ifdef __cplusplus
}
#endif
#endif
