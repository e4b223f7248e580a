#!/usr/bin/env bash
# Builds the plugins as the release ships them for this machine (static musl, the
# toolchain of scripts/release.sh: cargo-zigbuild and Zig from tests/deps.sh release) and
# prints the directory of the binaries. The benches measure these with SHIPPED=1: what a
# Krew user runs differs from the glibc `cargo build --release` in its libc (memcpy,
# malloc) and its linking (static, no PIE), so in speed and peak RSS (docs/dbbackup.md).
#
#   BIN=$(benches/shipped.sh) benches/rss.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
case $(uname -m) in
  x86_64) target=x86_64-unknown-linux-musl ;;
  aarch64) target=aarch64-unknown-linux-musl ;;
  *) echo "no release target for $(uname -m)" >&2; exit 2 ;;
esac
bash tests/deps.sh release >&2
tools=$(bash tests/deps.sh release-dir)
dir=${KDB_SHIPPED_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-db/shipped-target}
CARGO_TARGET_DIR=$dir CARGO_ZIGBUILD_ZIG_PATH=$tools/ziglang/zig nice \
  "$tools/bin/cargo-zigbuild" zigbuild --release --locked --target "$target" -q \
  --bin kubectl-dbbackup --bin kubectl-dbdeploy --bin kubectl-dbcheck >&2
echo "$dir/$target/release"
