#!/usr/bin/env bash
# Builds the release archives of every platform Krew users have and renders the Krew
# manifests from one template, so versions and checksums never drift:
#   dist/kubectl-db-<plugin>_<version>_<os>_<arch>.tar.gz   (+ .sha256)
#       kubectl-<plugin>, kubectl_complete-<plugin> (a shell script from completion/),
#       LICENSE, README.md
#   krew/<plugin>.yaml   from krew/plugin.yaml.tmpl + krew/platform.yaml.tmpl
#
# linux/amd64 and linux/arm64 (static, musl) and darwin/amd64 and darwin/arm64 are
# cross-built on any linux host with cargo-zigbuild and Zig (pinned; tests/deps.sh release
# installs them, the Rust targets and llvm-tools). TLS is rustls, so the binaries need no
# system library: the script checks that a linux binary links nothing dynamically and a
# darwin one only what every macOS has: libSystem, libiconv/libcharset (Rust's std links
# them) and the CoreFoundation and Security frameworks.
#
# Zig ships no macOS frameworks: the darwin link uses a stub SDK that this script writes,
# text stubs (.tbd) that name each framework's install path and the symbols the Rust
# bindings (core-foundation-sys, security-framework-sys) declare; dyld binds them to the
# real frameworks on the Mac.
#
# Cold, the four targets cost ~50 CPU-minutes (docs/install.md). The binaries are cached
# under ~/.cache/kubectl-db/release/bin/<key>, the key a hash of what goes into them (sources,
# Cargo.lock, rustc, the cross toolchain), and the cross target directory is kept, so a
# source change rebuilds only this crate. Archives are reproducible (sorted entries, fixed
# owner and mtime, no gzip timestamp), so a warm cache gives the same sha256 again.
#
# Usage:
#   scripts/release.sh                 build (or take from the cache), pack, render
#   scripts/release.sh --cache-status  print the key; exit 0 when its binaries are cached
#
# Environment:
#   KDB_RELEASE_DIST       output directory of the archives (default dist/)
#   KDB_RELEASE_KREW_DIR   output directory of the manifests (default krew/)
#   KDB_RELEASE_BASE_URL   where the archives are published
#                          (default <repository>/releases/download/v<version>)
#   KDB_RELEASE_PLATFORMS  the platforms to build and list (default all four)
#   KDB_RELEASE_BIN_DIR    pack these binaries instead of building (one platform only, e.g.
#                          KDB_RELEASE_PLATFORMS=linux/amd64: the tests' quick path)
#   KDB_RELEASE_CACHE      the cache (default ~/.cache/kubectl-db/release)
set -euo pipefail
cd "$(dirname "$0")/.."

PLUGINS=(dbdeploy dbcheck dbbackup dbpersist)
read -ra PLATFORMS <<<"${KDB_RELEASE_PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}"
# What the cached binaries were built with; change it when the build command changes.
RECIPE="cargo-zigbuild zigbuild --release --locked --bins; stub macOS SDK v1"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
homepage=$(sed -n 's/^repository = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
dist=${KDB_RELEASE_DIST:-dist}
krew_dir=${KDB_RELEASE_KREW_DIR:-krew}
base_url=${KDB_RELEASE_BASE_URL:-$homepage/releases/download/v$version}
cache=${KDB_RELEASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-db/release}
[[ -n $version && -n $homepage ]] || { echo "error: no version/repository in Cargo.toml" >&2; exit 2; }

rust_target() {
  case $1 in
    linux/amd64) echo x86_64-unknown-linux-musl ;;
    linux/arm64) echo aarch64-unknown-linux-musl ;;
    darwin/amd64) echo x86_64-apple-darwin ;;
    darwin/arm64) echo aarch64-apple-darwin ;;
    *) echo "error: unknown platform $1 (linux|darwin / amd64|arm64)" >&2; return 2 ;;
  esac
}
for platform in "${PLATFORMS[@]}"; do rust_target "$platform" >/dev/null; done

# The key of the binaries: every input that can change them.
source_key() {
  local inputs=(Cargo.toml Cargo.lock src) extra
  for extra in build.rs .cargo rust-toolchain rust-toolchain.toml; do
    [[ -e $extra ]] && inputs+=("$extra")
  done
  {
    echo "$RECIPE"
    rustc -vV
    basename "$(bash tests/deps.sh release-dir)"
    find "${inputs[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

short_description() {
  case $1 in
    dbdeploy) echo "Deploy PostgreSQL, MySQL, MariaDB as StatefulSets" ;;
    dbcheck) echo "Diagnose database pods and what to fix" ;;
    dbbackup) echo "Verified database dumps, restores and snapshots" ;;
    dbpersist) echo "Prove a database's data survives its pod's death" ;;
  esac
}

description() {
  case $1 in
    dbdeploy) cat <<'EOF'
Deploys PostgreSQL, MySQL or MariaDB as a StatefulSet done right: ConfigMap,
generated Secret, headless and ClusterIP Services, NetworkPolicy, probes that
run as the database user, resource requests and a PVC per pod; waits until
the server answers a query. `list` and `delete` manage what it deployed;
`--dry-run=client -o yaml` prints the manifests for GitOps.
EOF
    ;;
    dbcheck) cat <<'EOF'
Health report of a database pod or StatefulSet (PostgreSQL, MySQL, MariaDB):
pod state, probes, PVCs and StorageClass, Services and endpoints, server
version and connections, resource use; each failed check names its root
cause and the fix. Without a target it checks every database in the
namespace (or all namespaces with -A), for CI with -o json.
EOF
    ;;
    dbbackup) cat <<'EOF'
Streams pg_dump/mysqldump out of the pod into a gzip or zstd file with a
sha256 file and a completion check, verifies backups offline, restores them
with safety checks, and takes CSI VolumeSnapshots of a database's volumes.
EOF
    ;;
    dbpersist) cat <<'EOF'
The persistence test of a database StatefulSet, with evidence: writes a
marker row, deletes the pod, waits for its replacement, and reads the row
back, comparing the PVC before and after. PASS/FAIL report, -o json.
EOF
    ;;
  esac
}

# The source directory of a locked dependency in cargo's registry (after `cargo fetch`).
crate_dir() {
  local name=$1 ver dir
  ver=$(awk -v n="$name" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$name-$ver"; do
    [[ -d $dir ]] && { echo "$dir"; return 0; }
  done
  echo "error: $name $ver is not in cargo's registry" >&2
  return 1
}

# framework_stub NAME CRATE: a text stub of /System/Library/Frameworks/NAME.framework that
# exports every function and static the crate's extern blocks declare.
framework_stub() {
  local name=$1 dir=$2/System/Library/Frameworks/$1.framework src symbols
  src=$(crate_dir "$3")
  symbols=$(grep -rhoE '^\s*pub (fn|static( mut)?) [A-Za-z_][A-Za-z0-9_]*' "$src/src" |
    awk '{ print "_" $NF }' | LC_ALL=C sort -u | paste -sd, - | sed 's/,/, /g')
  mkdir -p "$dir"
  cat >"$dir/$name.tbd" <<EOF
--- !tapi-tbd
tbd-version: 4
targets: [ x86_64-macos, arm64-macos ]
install-name: '/System/Library/Frameworks/$name.framework/Versions/A/$name'
exports:
  - targets: [ x86_64-macos, arm64-macos ]
    symbols: [ $symbols ]
...
EOF
}

# The stub SDK of the darwin link: Zig's own libSystem and the two frameworks rustls'
# platform verifier links (through security-framework).
macos_stub_sdk() {
  local sdk=$1 zig_lib=$2
  rm -rf "$sdk"
  mkdir -p "$sdk/usr/lib" "$sdk/usr/include"
  cp "$zig_lib/libc/darwin/libSystem.tbd" "$sdk/usr/lib/"
  framework_stub CoreFoundation "$sdk" core-foundation-sys
  framework_stub Security "$sdk" security-framework-sys
}

# macOS on arm64 kills an unsigned binary: Zig signs it ad hoc. Check that the signature's
# page hashes (CodeDirectory, SHA-256) match the file, i.e. nothing changed it after the link.
check_adhoc_signature() {
  python3 - "$1" <<'EOF'
import hashlib, struct, sys
b = open(sys.argv[1], "rb").read()
off, sig = 32, None
for _ in range(struct.unpack_from("<I", b, 16)[0]):
    cmd, size = struct.unpack_from("<II", b, off)
    if cmd == 0x1D:  # LC_CODE_SIGNATURE
        sig = struct.unpack_from("<I", b, off + 8)[0]
    off += size
if sig is None:
    sys.exit(f"error: {sys.argv[1]} has no code signature")
count = struct.unpack_from(">I", b, sig + 8)[0]
for i in range(count):
    slot, blob = struct.unpack_from(">II", b, sig + 12 + 8 * i)
    if slot != 0:  # the CodeDirectory
        continue
    cd = sig + blob
    hashoff, _, _, ncode, limit, hsize, _, _, page = struct.unpack_from(">IIIIIBBBB", b, cd + 16)
    for n in range(ncode):
        want = b[cd + hashoff + n * hsize : cd + hashoff + (n + 1) * hsize]
        got = hashlib.sha256(b[n << page : min((n + 1) << page, limit)]).digest()[:hsize]
        if want != got:
            sys.exit(f"error: {sys.argv[1]}: code signature does not match page {n}")
    sys.exit(0)
sys.exit(f"error: {sys.argv[1]}: code signature has no CodeDirectory")
EOF
}

# check_binary PLATFORM FILE: no system library beyond what every machine of it has.
check_binary() {
  local platform=$1 bin=$2 llvm libs
  llvm=$(dirname "$(find "$(rustc --print sysroot)/lib/rustlib" -name llvm-objdump -type f | head -n1)")
  case $platform in
    linux/*)
      libs=$("$llvm/llvm-readobj" --needed-libs "$bin" | sed -n '/NeededLibraries \[/,/\]/p' | grep -v '[][]' | xargs -r || true)
      [[ -z $libs ]] || { echo "error: $bin links $libs dynamically" >&2; return 1; }
      ;;
    darwin/*)
      libs=$("$llvm/llvm-objdump" --macho --dylibs-used "$bin" | tail -n +2 |
        grep -vE '^\s*(/usr/lib/lib(System\.B|iconv\.2|charset\.1)\.dylib|/System/Library/Frameworks/[A-Za-z]+\.framework/)' | xargs -r || true)
      [[ -z $libs ]] || { echo "error: $bin links $libs" >&2; return 1; }
      [[ $platform == darwin/arm64 ]] && check_adhoc_signature "$bin"
      ;;
  esac
  file "$bin" 2>/dev/null | sed 's/^/  /' >&2 || true
}

# Build the binaries of every platform into $cache/bin/$key/<os>_<arch>/ (unless cached).
build_binaries() {
  local key=$1 tools target_args=() platform out target built=() sdk
  for platform in "${PLATFORMS[@]}"; do
    [[ -f $cache/bin/$key/${platform/\//_}/complete ]] || built+=("$platform")
  done
  if ((${#built[@]} == 0)); then
    echo "release binaries $key cached in $cache/bin/$key" >&2
    return 0
  fi
  bash tests/deps.sh release >&2
  tools=$(bash tests/deps.sh release-dir)
  cargo fetch --locked >&2
  for platform in "${built[@]}"; do
    target_args+=(--target "$(rust_target "$platform")")
  done
  # Set for every build, darwin or not: C build scripts rerun when SDKROOT changes.
  sdk=$cache/macos-stub-sdk
  macos_stub_sdk "$sdk" "$tools/ziglang/lib"
  echo "building release binaries $key for ${built[*]} (cold: ~50 CPU-minutes)" >&2
  local start=$SECONDS
  # One cargo run for all targets: the build scripts and proc-macros compile once.
  CARGO_TARGET_DIR=$cache/target CARGO_ZIGBUILD_ZIG_PATH=$tools/ziglang/zig SDKROOT=$sdk \
    "$tools/bin/cargo-zigbuild" zigbuild --release --locked --bins "${target_args[@]}" >&2
  echo "built in $((SECONDS - start))s" >&2
  for platform in "${built[@]}"; do
    target=$(rust_target "$platform")
    out=$cache/bin/$key/${platform/\//_}
    rm -rf "$out" && mkdir -p "$out"
    for plugin in "${PLUGINS[@]}"; do
      cp "$cache/target/$target/release/kubectl-$plugin" "$out/"
      check_binary "$platform" "$out/kubectl-$plugin"
    done
    touch "$out/complete"
  done
  # Keep the binaries of the three newest keys.
  ls -1dt "$cache"/bin/*/ | tail -n +4 | xargs -r rm -rf
}

archive_name() { echo "kubectl-db-$1_${version}_${2%/*}_${2#*/}.tar.gz"; }

# The binaries of a platform: the cache's, or KDB_RELEASE_BIN_DIR's.
bin_dir_of() {
  if [[ -n ${KDB_RELEASE_BIN_DIR:-} ]]; then
    echo "$KDB_RELEASE_BIN_DIR"
  else
    echo "$cache/bin/$key/${1/\//_}"
  fi
}

pack_archives() {
  local stage platform bin_dir plugin dir exe archive
  stage=$(mktemp -d)
  # A fixed mtime, not the commit's: committing the manifests must not change the archives.
  local mtime=${SOURCE_DATE_EPOCH:-315532800}
  for platform in "${PLATFORMS[@]}"; do
    bin_dir=$(bin_dir_of "$platform")
    for plugin in "${PLUGINS[@]}"; do
      dir=$stage/$platform/$plugin
      mkdir -p "$dir"
      exe=$bin_dir/kubectl-$plugin
      [[ -x $exe ]] || { echo "error: $exe was not built" >&2; rm -rf "$stage"; return 1; }
      cp "$exe" "$dir/"
      # The completion helper is a script (completion/), the same on every platform.
      cp "completion/kubectl_complete-$plugin" "$dir/"
      cp LICENSE README.md "$dir/"
      chmod 755 "$dir/kubectl-$plugin" "$dir/kubectl_complete-$plugin"
      chmod 644 "$dir/LICENSE" "$dir/README.md"
      archive=$dist/$(archive_name "$plugin" "$platform")
      tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
        -C "$dir" -cf - . | gzip -9 -n >"$archive"
      (cd "$dist" && sha256sum "$(basename "$archive")" >"$(basename "$archive").sha256")
      echo "wrote $archive" >&2
    done
  done
  rm -rf "$stage"
}

# Every platform listed has its archive and its real sha256.
render_manifests() {
  local manifest_template platform_template plugin platforms platform name sha entry text
  manifest_template=$(cat krew/plugin.yaml.tmpl)
  platform_template=$(cat krew/platform.yaml.tmpl)
  for plugin in "${PLUGINS[@]}"; do
    platforms=""
    for platform in "${PLATFORMS[@]}"; do
      name=$(archive_name "$plugin" "$platform")
      sha=$(sha256sum "$dist/$name" | cut -d' ' -f1)
      entry=${platform_template//@OS@/${platform%/*}}
      entry=${entry//@ARCH@/${platform#*/}}
      entry=${entry//@URI@/$base_url/$name}
      entry=${entry//@SHA256@/$sha}
      entry=${entry//@PLUGIN@/$plugin}
      platforms+=$entry$'\n'
    done
    text=${manifest_template//@DESCRIPTION@/$(description "$plugin" | sed 's/^/    /')}
    text=${text//@PLATFORMS@/${platforms%$'\n'}}
    text=${text//@SHORT@/$(short_description "$plugin")}
    text=${text//@HOMEPAGE@/$homepage}
    text=${text//@VERSION@/$version}
    text=${text//@PLUGIN@/$plugin}
    printf '%s\n' "$text" >"$krew_dir/$plugin.yaml"
    echo "wrote $krew_dir/$plugin.yaml" >&2
  done
}

# The cache status: print the key, succeed when every platform's binaries are cached.
cache_status() {
  local platform
  key=$(source_key)
  echo "$key"
  for platform in "${PLATFORMS[@]}"; do
    [[ -f $cache/bin/$key/${platform/\//_}/complete ]] || return 1
  done
}

# A function, so that bash has read the whole script before it runs (editing the script
# during a long build then changes nothing of the run).
main() {
  if [[ ${1:-} == --cache-status ]]; then
    cache_status
    return
  fi
  if [[ -n ${KDB_RELEASE_BIN_DIR:-} ]]; then
    ((${#PLATFORMS[@]} == 1)) || { echo "error: KDB_RELEASE_BIN_DIR packs one platform: set KDB_RELEASE_PLATFORMS" >&2; return 2; }
    key=""
  else
    key=$(source_key)
    build_binaries "$key"
  fi
  mkdir -p "$dist" "$krew_dir"
  pack_archives
  render_manifests
}

main "$@"; exit
