#!/usr/bin/env bash
# Builds the local container images of the kubectl-db test cluster without any registry:
#   debootstrap --variant=minbase bookworm  ->  rootfs (cached as a tarball)
#   copy + chroot apt-get install            ->  image rootfs
#   tar -> umoci (OCI layout) -> skopeo      ->  docker-archive tarball with all its tags
# Tarballs are cached under $KDB_CACHE/images/<name>-<hash>.tar, the hash covering this
# script, images/<name>/ (the entrypoint) and k8s/pause, so an edit rebuilds what it touches.
# `cluster.sh up` imports them with `ctr -n k8s.io images import`.
#
# Usage: build-images.sh [IMAGE...]   (default: pause tools postgres mariadb)
# Prints the docker-archive paths, one per line, on stdout; progress on stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_DIR=$(dirname "$HERE")
CACHE=${KDB_CACHE:-$HOME/.cache/kubectl-db}
IMG_CACHE=$CACHE/images
SUITE=bookworm

log() { echo "[images] $*" >&2; }

# Image name -> tags (first one is the primary name).
declare -A TAGS=(
  [pause]="registry.k8s.io/pause:3.10.1 registry.k8s.io/pause:3.10 localhost/kdb/pause:3.10"
  [tools]="localhost/kdb/tools:1 docker.io/library/busybox:1.36"
  [postgres]="localhost/kdb/postgres:15 docker.io/library/postgres:15-alpine"
  [mariadb]="localhost/kdb/mariadb:10.11 docker.io/library/mariadb:10.11 docker.io/library/mysql:8.0"
)

# The machine's Debian mirror (first deb.debian.org-style URI that is not -security).
debian_mirror() {
  local m
  m=$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
      | grep -oE 'https?://[^ ]*/debian/?$|https?://[^ ]*/debian ' | head -n1 | tr -d ' ') || true
  echo "${m:-http://deb.debian.org/debian}"
}

content_hash() { # hash of the files under the given paths (relative to tests/cluster)
  (cd "$CLUSTER_DIR" && for p in "$@"; do if [[ -e $p ]]; then find "$p" -type f; fi; done | LC_ALL=C sort \
    | xargs sha256sum) | sha256sum | cut -c1-12
}

# --- base rootfs ---------------------------------------------------------------------------
# Only the debootstrap step, cached as a tarball so each image starts from a copy.
base_tarball() {
  local key tarball tmp
  key=$(echo "$SUITE minbase v1 $(debian_mirror)" | sha256sum | cut -c1-12)
  tarball=$IMG_CACHE/base-$SUITE-$key.tar
  if [[ ! -s $tarball ]]; then
    mkdir -p "$IMG_CACHE"
    tmp=$(mktemp -d "$IMG_CACHE/.base.XXXXXX")
    log "debootstrap --variant=minbase $SUITE from $(debian_mirror) (~1 min)"
    debootstrap --variant=minbase "$SUITE" "$tmp/root" "$(debian_mirror)" >"$tmp/debootstrap.log" 2>&1 \
      || { tail -n 30 "$tmp/debootstrap.log" >&2; rm -rf "$tmp"; return 1; }
    # Same apt sources as the host (bookworm, -updates, -security), keep images small.
    cp /etc/apt/sources.list.d/debian.sources "$tmp/root/etc/apt/sources.list.d/" 2>/dev/null || true
    [[ -s $tmp/root/etc/apt/sources.list.d/debian.sources ]] && rm -f "$tmp/root/etc/apt/sources.list"
    rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
    tar -C "$tmp/root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$tmp"
  fi
  echo "$tarball"
}

# chroot helpers: /proc mounted, no daemons started by package scripts, host DNS.
chroot_prepare() {
  local root=$1
  mount -t proc proc "$root/proc"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # Like the host: do not reject a mirror snapshot whose Release file is old.
  echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99kdb-build"
}
chroot_finish() {
  local root=$1
  umount "$root/proc" 2>/dev/null || umount -l "$root/proc" || true
  rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/apt/apt.conf.d/99kdb-build"
  : >"$root/etc/resolv.conf"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/tmp/"* "$root/var/log/"*.log
}
in_chroot() { local root=$1; shift; DEBIAN_FRONTEND=noninteractive LC_ALL=C chroot "$root" "$@"; }
apt_install() {
  local root=$1; shift
  in_chroot "$root" apt-get -qq update
  in_chroot "$root" apt-get -qq -y install --no-install-recommends "$@" >/dev/null
}

# --- per-image customisation ---------------------------------------------------------------
customise_tools() { :; }

customise_postgres() {
  local root=$1
  # The official postgres:15-alpine image uses uid/gid 70; Debian's package would pick 100.
  in_chroot "$root" groupadd -r -g 70 postgres
  in_chroot "$root" useradd -r -u 70 -g 70 -d /var/lib/postgresql -s /bin/bash -c PostgreSQL postgres
  mkdir -p "$root/etc/postgresql-common/createcluster.d"
  echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.d/kdb.conf"
  # zstd as in the official images (docker-library/postgres installs it in both variants), so
  # dumps compress in the pod with it. The mariadb image is left without it, although the
  # official one has it too: that keeps the pod-has-only-gzip path under test.
  apt_install "$root" postgresql-15 libnss-wrapper zstd
  # As in the official image: initdb's postgresql.conf listens on all interfaces.
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$root/usr/share/postgresql/15/postgresql.conf.sample"
  grep -q "^listen_addresses = '\*'" "$root/usr/share/postgresql/15/postgresql.conf.sample"
  install -m 0755 "$HERE/postgres/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  ln -sf usr/local/bin/docker-entrypoint.sh "$root/docker-entrypoint.sh"
  mkdir -p "$root/docker-entrypoint-initdb.d" "$root/var/lib/postgresql/data" "$root/run/postgresql"
  chown -R 70:70 "$root/var/lib/postgresql" "$root/run/postgresql"
  chmod 3777 "$root/run/postgresql"
  chmod 1777 "$root/var/lib/postgresql/data"
}

customise_mariadb() {
  local root=$1
  # The official mariadb/mysql images run as uid/gid 999.
  in_chroot "$root" groupadd -r -g 999 mysql
  in_chroot "$root" useradd -r -u 999 -g 999 -d /var/lib/mysql -s /bin/false -c MariaDB mysql
  apt_install "$root" mariadb-server mariadb-client
  # Client names the product uses (Debian ships them, make sure).
  local n
  for n in mysql mysqldump mysqladmin mysqld; do
    if [[ ! -e $root/usr/bin/$n ]]; then
      case $n in mysqld) ln -s /usr/sbin/mariadbd "$root/usr/sbin/mysqld" 2>/dev/null || true ;;
                 *) ln -s "mariadb${n#mysql}" "$root/usr/bin/$n" ;; esac
    fi
  done
  # An empty datadir: the entrypoint initialises it on first start.
  rm -rf "$root/var/lib/mysql" && mkdir -p "$root/var/lib/mysql" "$root/run/mysqld"
  chown 999:999 "$root/var/lib/mysql" "$root/run/mysqld"
  chmod 1777 "$root/run/mysqld" "$root/var/lib/mysql"
  # Containers log to stderr, not to syslog or files; listen on all interfaces like the
  # official image (the pod network stays on the local bridge).
  cat >"$root/etc/mysql/mariadb.conf.d/90-kdb-container.cnf" <<'EOF'
[mariadbd]
skip-host-cache
skip-name-resolve
bind-address = 0.0.0.0
EOF
  sed -i -E 's/^(log_error|log-error)/#&/' "$root/etc/mysql/mariadb.conf.d/"*.cnf
  # Debian reads conf.d before mariadb.conf.d, so its bind-address etc. would win over the
  # product's ConfigMap in conf.d: read the image defaults first, conf.d last (as upstream).
  rm -f "$root/etc/mysql/my.cnf"
  cat >"$root/etc/mysql/my.cnf" <<'EOF'
[client-server]
socket = /run/mysqld/mysqld.sock
!includedir /etc/mysql/mariadb.conf.d/
!includedir /etc/mysql/conf.d/
EOF
  install -m 0755 "$HERE/mariadb/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  ln -sf usr/local/bin/docker-entrypoint.sh "$root/docker-entrypoint.sh"
  mkdir -p "$root/docker-entrypoint-initdb.d"
}

# --- packing ---------------------------------------------------------------------------------
# pack NAME ROOTFS_DIR OUT.tar [umoci config args...]
pack() {
  local name=$1 root=$2 out=$3; shift 3
  local tags=(${TAGS[$name]}) work
  work=$(mktemp -d "$IMG_CACHE/.pack.XXXXXX")
  tar -C "$root" --numeric-owner --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* \
      -cf "$work/layer.tar" .
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:img"
  umoci raw add-layer --image "$work/oci:img" "$work/layer.tar"
  umoci config --image "$work/oci:img" --author kubectl-db --os linux --architecture amd64 "$@"
  local extra=() t
  for t in "${tags[@]:1}"; do extra+=(--additional-tag "$t"); done
  rm -f "$out.tmp"
  skopeo --insecure-policy copy -q "${extra[@]}" "oci:$work/oci:img" "docker-archive:$out.tmp:${tags[0]}" >&2
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

build_pause() {
  local out=$1 root
  root=$(mktemp -d "$IMG_CACHE/.pause.XXXXXX")
  command -v go >/dev/null || { log "Go is needed to build the pause image"; return 1; }
  (cd "$CLUSTER_DIR/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$root/pause" ./pause)
  pack pause "$root" "$out" --clear config.cmd --config.entrypoint /pause --config.user 65535:65535
  rm -rf "$root"
}

build_rootfs_image() {
  local name=$1 out=$2 base work
  base=$(base_tarball)
  work=$(mktemp -d "$IMG_CACHE/.$name.XXXXXX")
  mkdir "$work/root"
  tar -C "$work/root" -xf "$base"
  chroot_prepare "$work/root"
  if ! "customise_$name" "$work/root"; then chroot_finish "$work/root"; rm -rf "$work"; return 1; fi
  chroot_finish "$work/root"
  local cfg=(--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
             --config.env LANG=C.UTF-8)
  case $name in
    tools)    cfg+=(--config.cmd sh) ;;
    postgres) cfg=(--config.env PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                   --config.env LANG=C.UTF-8 --config.env PG_MAJOR=15
                   --config.env PGDATA=/var/lib/postgresql/data
                   --config.entrypoint docker-entrypoint.sh --config.cmd postgres
                   --config.exposedports 5432/tcp --config.volume /var/lib/postgresql/data
                   --config.stopsignal SIGINT) ;;
    mariadb)  cfg+=(--config.entrypoint docker-entrypoint.sh --config.cmd mariadbd
                    --config.exposedports 3306/tcp --config.volume /var/lib/mysql) ;;
  esac
  pack "$name" "$work/root" "$out" "${cfg[@]}"
  rm -rf "$work"
}

image_tarball() { # NAME -> cached path (building it if needed)
  local name=$1 hash out
  hash=$(content_hash images/build-images.sh "images/$name" k8s/pause)
  out=$IMG_CACHE/$name-$hash.tar
  if [[ ! -s $out ]]; then
    mkdir -p "$IMG_CACHE"
    local t0=$SECONDS
    log "building image $name (${TAGS[$name]})"
    if [[ $name == pause ]]; then build_pause "$out"; else build_rootfs_image "$name" "$out"; fi
    log "image $name built in $((SECONDS - t0))s"
    # Drop stale versions of this image.
    find "$IMG_CACHE" -maxdepth 1 -name "$name-*.tar" ! -name "$name-$hash.tar" -delete
  fi
  echo "$out"
}

main() {
  local names=("$@")
  (( ${#names[@]} )) || names=(pause tools postgres mariadb)
  local n
  for n in "${names[@]}"; do
    [[ -n ${TAGS[$n]:-} ]] || { echo "unknown image $n" >&2; exit 2; }
    image_tarball "$n"
  done
}

if [[ ${1:-} == --tags ]]; then shift; echo "${TAGS[$1]}"; exit 0; fi
main "$@"
