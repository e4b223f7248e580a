#!/usr/bin/env bash
# Builds the release archives and renders the Krew manifests from one template, so versions
# and checksums never drift:
#   dist/kubectl-db-<plugin>_<version>_<os>_<arch>.tar.gz   (+ .sha256)
#       kubectl-<plugin>, kubectl_complete-<plugin> (a shell script from completion/),
#       LICENSE, README.md
#   krew/<plugin>.yaml   from krew/plugin.yaml.tmpl + krew/platform.yaml.tmpl
#
# Only the host platform is built here (linux/amd64 on the project's machines: there is no
# cross toolchain). The manifests still list linux and darwin on amd64 and arm64, with uris
# on the release URL pattern; an archive of another platform already in dist/ (e.g. from a
# CI runner of that platform) gives its sha256, otherwise its sha256 is zeros and marked
# as not built, and the script says so.
#
# Environment:
#   KDB_RELEASE_DIST      output directory of the archives (default dist/)
#   KDB_RELEASE_KREW_DIR  output directory of the manifests (default krew/)
#   KDB_RELEASE_BIN_DIR   take the plugin binaries from here instead of `cargo build --release`
#   KDB_RELEASE_BASE_URL  where the archives are published
#                         (default <repository>/releases/download/v<version>)
set -euo pipefail
cd "$(dirname "$0")/.."

PLUGINS=(dbdeploy dbcheck dbbackup dbpersist)
PLATFORMS=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64)

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
homepage=$(sed -n 's/^repository = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
dist=${KDB_RELEASE_DIST:-dist}
krew_dir=${KDB_RELEASE_KREW_DIR:-krew}
base_url=${KDB_RELEASE_BASE_URL:-$homepage/releases/download/v$version}
[[ -n $version && -n $homepage ]] || { echo "error: no version/repository in Cargo.toml" >&2; exit 2; }

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) host=linux/amd64 ;;
  Linux/aarch64) host=linux/arm64 ;;
  Darwin/x86_64) host=darwin/amd64 ;;
  Darwin/arm64) host=darwin/arm64 ;;
  *) echo "error: unsupported build host $(uname -s)/$(uname -m)" >&2; exit 2 ;;
esac

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

# Build (or take) the binaries of the host platform.
if [[ -n ${KDB_RELEASE_BIN_DIR:-} ]]; then
  bin_dir=$KDB_RELEASE_BIN_DIR
else
  echo "building release binaries for $host" >&2
  cargo build --release --locked --bins
  bin_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
fi

mkdir -p "$dist" "$krew_dir"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

archive_name() { echo "kubectl-db-$1_${version}_${2%/*}_${2#*/}.tar.gz"; }

# Reproducible archives: fixed order, owner and mtime, no gzip timestamp.
mtime=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
for plugin in "${PLUGINS[@]}"; do
  dir=$stage/$plugin
  mkdir -p "$dir"
  exe=$bin_dir/kubectl-$plugin
  [[ -x $exe ]] || { echo "error: $exe was not built" >&2; exit 1; }
  cp "$exe" "$dir/"
  # The completion helper is a script (completion/), the same on every platform.
  cp "completion/kubectl_complete-$plugin" "$dir/"
  chmod 755 "$dir/kubectl_complete-$plugin"
  cp LICENSE README.md "$dir/"
  archive=$dist/$(archive_name "$plugin" "$host")
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
    -C "$dir" -cf - . | gzip -9 -n > "$archive"
  (cd "$dist" && sha256sum "$(basename "$archive")" > "$(basename "$archive").sha256")
  echo "wrote $archive" >&2
done

# Render the manifests.
manifest_template=$(cat krew/plugin.yaml.tmpl)
platform_template=$(cat krew/platform.yaml.tmpl)
missing=()
for plugin in "${PLUGINS[@]}"; do
  platforms=""
  for platform in "${PLATFORMS[@]}"; do
    name=$(archive_name "$plugin" "$platform")
    note=""
    if [[ -f $dist/$name ]]; then
      sha=$(sha256sum "$dist/$name" | cut -d' ' -f1)
    else
      sha=$(printf '0%.0s' {1..64})
      note="  # not built: replace with the sha256 of $name"
      missing+=("$name")
    fi
    entry=${platform_template//@OS@/${platform%/*}}
    entry=${entry//@ARCH@/${platform#*/}}
    entry=${entry//@URI@/$base_url/$name}
    entry=${entry//@SHA256@/$sha}
    entry=${entry//@SHA_NOTE@/$note}
    entry=${entry//@PLUGIN@/$plugin}
    platforms+=$entry$'\n'
  done
  text=${manifest_template//@DESCRIPTION@/$(description "$plugin" | sed 's/^/    /')}
  text=${text//@PLATFORMS@/${platforms%$'\n'}}
  text=${text//@SHORT@/$(short_description "$plugin")}
  text=${text//@HOMEPAGE@/$homepage}
  text=${text//@VERSION@/$version}
  text=${text//@PLUGIN@/$plugin}
  printf '%s\n' "$text" > "$krew_dir/$plugin.yaml"
  echo "wrote $krew_dir/$plugin.yaml" >&2
done

if ((${#missing[@]})); then
  printf 'note: only %s is built on this machine; not built: %s\n' "$host" "${missing[*]}" >&2
fi
