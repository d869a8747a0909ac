#!/usr/bin/env bash
# What `make fuzz` needs: the nightly toolchain (rustup's, already on the machine) and cargo-fuzz,
# installed from crates.io into target/tools when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 1
fi
if [ ! -x target/tools/bin/cargo-fuzz ]; then
    cargo install --locked --quiet --root target/tools cargo-fuzz@0.13.2
fi
