#!/usr/bin/env bash
# What `make check` needs beyond the toolchain: cargo-deny (licenses, bans, sources; see deny.toml)
# and cargo-machete (unused dependencies), built from crates.io into target/tools when missing.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
install() {
    local tool=$1 version=$2
    shift 2
    if ! target/tools/bin/"$tool" --version 2>/dev/null | grep -q "$version"; then
        echo "check: installing $tool $version (cargo install, into target/tools)"
        cargo install --locked --quiet --root target/tools "$tool@$version" "$@"
    fi
}
install cargo-deny 0.20.2 --no-default-features
install cargo-machete 0.9.2
