#!/usr/bin/env bash
# Installs what the build and tests need on a fresh machine (idempotent, quick when done):
# the Rust toolchain's components and the Debian packages of the local cluster.
#
#   tests/deps.sh              what `make test` needs
#   tests/deps.sh release      also the cross toolchain of scripts/release.sh: cargo-zigbuild
#                              and Zig (pinned, from PyPI, into the cache directory below), the
#                              four Rust targets and llvm-tools (to inspect the binaries)
#   tests/deps.sh release-dir  prints that cache directory (installs nothing)
set -euo pipefail
cd "$(dirname "$0")/.."

# The cross toolchain of the release archives; a change here rebuilds them (the release
# cache key includes this directory's name).
ZIGBUILD_VERSION=0.24.0
ZIG_VERSION=0.13.0
RELEASE_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin)
release_dir=${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-db/zigbuild-$ZIGBUILD_VERSION-zig-$ZIG_VERSION

if [[ ${1:-} == release-dir ]]; then
  echo "$release_dir"
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust >= 1.89 (rustup)" >&2; exit 1; }

# The release toolchain: both tools are wheels on PyPI (cargo-zigbuild's holds its binary),
# so nothing is compiled. Installed into a directory of their own, not the user's Python.
release_deps() {
  command -v rustup >/dev/null 2>&1 || { echo "rustup not found: it installs the cross targets" >&2; exit 1; }
  local installed
  installed=$(rustup target list --installed)
  for target in "${RELEASE_TARGETS[@]}"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
  done
  rustup component list --installed 2>/dev/null | grep -q '^llvm-tools' || rustup component add llvm-tools
  if [[ ! -x $release_dir/bin/cargo-zigbuild || ! -x $release_dir/ziglang/zig ]]; then
    echo "installing cargo-zigbuild $ZIGBUILD_VERSION and zig $ZIG_VERSION into $release_dir" >&2
    rm -rf "$release_dir.tmp"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
      --target "$release_dir.tmp" "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIG_VERSION"
    rm -rf "$release_dir"
    mv "$release_dir.tmp" "$release_dir"
  fi
}

if [[ ${1:-} == release ]]; then
  release_deps
  exit 0
fi

if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi
command -v go >/dev/null 2>&1 || [[ -x /usr/local/go/bin/go ]] || { echo "go not found: install Go >= 1.24" >&2; exit 1; }
bash tests/cluster/cluster.sh deps
