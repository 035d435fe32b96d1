#!/usr/bin/env bash
# Rebuilds bin/matmul.wasm from src/matmul.c against lowcloud's GPU header (include/lowcloud/gpu.h)
# with Debian's clang + wasi-libc:
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
set -euo pipefail
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -I ../../include -Wl,--strip-all -o bin/matmul.wasm src/matmul.c
