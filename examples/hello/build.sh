#!/usr/bin/env bash
# Rebuilds bin/hello.wasm from src/hello.c with Debian's clang + wasi-libc:
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
set -euo pipefail
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -Wl,--strip-all -o bin/hello.wasm src/hello.c
