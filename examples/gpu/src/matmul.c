/*
 * matmul: C = A x B for two N x N float32 matrices on the GPU (lowcloud/gpu.h), checked against the
 * same product computed on the CPU in this guest. Prints one line:
 *   n 256 max error 1.2e-05 gpu 12.3 ms 2.73 GFLOP/s cpu 45.6 ms 0.74 GFLOP/s adapter <name>
 * Exit status: 0 when the products agree, 1 when they do not, 2 for a bad argument, 3 when a GPU
 * call fails (its error on stderr; e.g. a buffer past the gpu grant).
 */
#include <lowcloud/gpu.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *WGSL =
    "struct Dims { n: u32 }\n"
    "@group(0) @binding(0) var<storage, read> a: array<f32>;\n"
    "@group(0) @binding(1) var<storage, read> b: array<f32>;\n"
    "@group(0) @binding(2) var<storage, read_write> c: array<f32>;\n"
    "@group(0) @binding(3) var<uniform> dims: Dims;\n"
    "@compute @workgroup_size(8, 8)\n"
    "fn main(@builtin(global_invocation_id) id: vec3<u32>) {\n"
    "  let n = dims.n;\n"
    "  if (id.x >= n || id.y >= n) { return; }\n"
    "  var sum = 0.0;\n"
    "  for (var k = 0u; k < n; k = k + 1u) { sum = sum + a[id.y * n + k] * b[k * n + id.x]; }\n"
    "  c[id.y * n + id.x] = sum;\n"
    "}\n";

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void check(int32_t status, const char *what) {
  if (status == LC_GPU_OK) return;
  char msg[512];
  int32_t len = lc_gpu_last_error(msg, sizeof msg - 1);
  if (len < 0) len = 0;
  if (len > (int32_t)sizeof msg - 1) len = sizeof msg - 1;
  msg[len] = 0;
  const char *kind = status == LC_GPU_ERR_BUDGET ? "over the gpu grant" : status == LC_GPU_ERR_HANDLE ? "bad handle" : status == LC_GPU_ERR_UNAVAILABLE ? "no GPU" : "invalid";
  fprintf(stderr, "matmul: %s failed (%s): %s\n", what, kind, msg);
  exit(3);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 256;
  if (n < 1 || n > 4096) {
    fprintf(stderr, "usage: matmul N (1..4096)\n");
    return 2;
  }
  size_t count = (size_t)n * n, bytes = count * sizeof(float);
  float *a = malloc(bytes), *b = malloc(bytes), *gpu = malloc(bytes), *cpu = malloc(bytes);
  if (!a || !b || !gpu || !cpu) {
    fprintf(stderr, "matmul: out of memory for N=%ld\n", n);
    return 3;
  }
  srand(1);
  for (size_t i = 0; i < count; i++) {
    a[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
    b[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
  }

  lc_gpu_handle dev, bufs[4], read, shader, pipeline, group, enc, pass, cmd;
  check(lc_gpu_device(&dev), "device");
  double g0 = now_ms();
  check(lc_gpu_buffer_create(dev, bytes, LC_GPU_BUFFER_STORAGE | LC_GPU_BUFFER_COPY_DST, &bufs[0]), "buffer a");
  check(lc_gpu_buffer_create(dev, bytes, LC_GPU_BUFFER_STORAGE | LC_GPU_BUFFER_COPY_DST, &bufs[1]), "buffer b");
  check(lc_gpu_buffer_create(dev, bytes, LC_GPU_BUFFER_STORAGE | LC_GPU_BUFFER_COPY_SRC, &bufs[2]), "buffer c");
  check(lc_gpu_buffer_create(dev, 16, LC_GPU_BUFFER_UNIFORM | LC_GPU_BUFFER_COPY_DST, &bufs[3]), "buffer dims");
  check(lc_gpu_buffer_create(dev, bytes, LC_GPU_BUFFER_MAP_READ | LC_GPU_BUFFER_COPY_DST, &read), "buffer read");
  uint32_t dims[4] = {(uint32_t)n, 0, 0, 0};
  check(lc_gpu_buffer_write(dev, bufs[0], 0, a, bytes), "write a");
  check(lc_gpu_buffer_write(dev, bufs[1], 0, b, bytes), "write b");
  check(lc_gpu_buffer_write(dev, bufs[3], 0, dims, sizeof dims), "write dims");
  check(lc_gpu_shader_module_create(dev, WGSL, strlen(WGSL), &shader), "shader");
  check(lc_gpu_compute_pipeline_create(dev, shader, "main", 4, &pipeline), "pipeline");
  check(lc_gpu_bind_group_create(dev, pipeline, 0, bufs, 4, &group), "bind group");
  check(lc_gpu_command_encoder_create(dev, &enc), "encoder");
  check(lc_gpu_compute_pass_begin(enc, &pass), "pass");
  check(lc_gpu_compute_pass_set_pipeline(pass, pipeline), "set pipeline");
  check(lc_gpu_compute_pass_set_bind_group(pass, 0, group), "set bind group");
  uint32_t groups = (uint32_t)(n + 7) / 8;
  check(lc_gpu_compute_pass_dispatch(pass, groups, groups, 1), "dispatch");
  check(lc_gpu_compute_pass_end(pass), "end pass");
  check(lc_gpu_encoder_copy_buffer(enc, bufs[2], 0, read, 0, bytes), "copy");
  check(lc_gpu_encoder_finish(enc, &cmd), "finish");
  check(lc_gpu_queue_submit(dev, &cmd, 1), "submit");
  check(lc_gpu_queue_wait(dev), "wait");
  check(lc_gpu_buffer_map_read(read, 0, gpu, bytes), "map read");
  double gpu_ms = now_ms() - g0;

  double c0 = now_ms();
  for (long i = 0; i < n; i++) {
    for (long j = 0; j < n; j++) cpu[i * n + j] = 0;
    for (long k = 0; k < n; k++) {
      float aik = a[i * n + k];
      for (long j = 0; j < n; j++) cpu[i * n + j] += aik * b[k * n + j];
    }
  }
  double cpu_ms = now_ms() - c0;

  double max_err = 0;
  for (size_t i = 0; i < count; i++) {
    double e = fabs((double)gpu[i] - (double)cpu[i]);
    if (!(e <= max_err)) max_err = e; /* NaN counts as an error */
  }
  char name[256];
  int32_t len = lc_gpu_adapter_name(name, sizeof name - 1);
  if (len < 0) len = 0;
  if (len > (int32_t)sizeof name - 1) len = sizeof name - 1;
  name[len] = 0;
  double flop = 2.0 * n * n * n;
  int ok = max_err <= 1e-3 * sqrt((double)n);
  printf("n %ld max error %.3g gpu %.1f ms %.2f GFLOP/s cpu %.1f ms %.2f GFLOP/s adapter %s%s\n", n, max_err, gpu_ms, flop / gpu_ms / 1e6, cpu_ms, flop / cpu_ms / 1e6, name, ok ? "" : " MISMATCH");
  for (int i = 0; i < 4; i++) lc_gpu_release(bufs[i]);
  lc_gpu_release(read);
  return ok ? 0 : 1;
}
