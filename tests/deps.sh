#!/usr/bin/env bash
# Installs what the build and tests need on a fresh machine (idempotent, quick when done):
# the Rust toolchain's components and the Debian packages of the local cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust >= 1.89 (rustup)" >&2; exit 1; }
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi
command -v go >/dev/null 2>&1 || [[ -x /usr/local/go/bin/go ]] || { echo "go not found: install Go >= 1.24" >&2; exit 1; }
bash tests/cluster/cluster.sh deps
