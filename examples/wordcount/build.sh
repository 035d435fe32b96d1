#!/usr/bin/env bash
# Rebuilds bin/wc-*.wasm (WASI 0.2 components) from src/ with Debian's clang + wasi-libc and the
# component tooling of the repository's build script:
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
set -euo pipefail
cd "$(dirname "$0")/../.."
node test/fixtures/guests/p2/build.mjs wc-map wc-reduce wc-collect wc-single
