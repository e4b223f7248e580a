#!/usr/bin/env bash
# kubectl-db local test cluster: a real single-node Kubernetes v1.34.4 on this machine,
# built from the registries alone (Go module proxy, Debian apt), for tests and demos.
#
#   etcd (Debian etcd-server) + kube-apiserver (TLS on 127.0.0.1:16443) + controller-manager
#   + scheduler + kubelet, built from k8s.io/kubernetes v1.34.4 (tests/cluster/k8s/go.mod);
#   containerd + runc + bridge CNI from Debian; a dynamic hostPath provisioner for the
#   default StorageClass `standard` (k8s/provisioner); images built from a debootstrapped
#   bookworm (images/build-images.sh): pause, tools (busybox stand-in), postgres 15 and
#   mariadb 10.11 (also tagged postgres:15-alpine, mysql:8.0, mariadb:10.11); a minimal
#   CoreDNS (coredns/) on the pod bridge address answers cluster names, so
#   <pod>.<headless-svc>.<ns>.svc.cluster.local resolves to pod IPs. No kube-proxy: Service
#   ClusterIPs are not reachable; use headless Services / pod DNS names.
#
# Facts of these machines it works around (see /work/shared/CLUSTER-FACTS.md):
#   - no systemd, no Docker: every daemon is started here, tracked by a PID file holding the
#     daemon's own PID, and stopped by that PID; containerd's root/state/sockets live under
#     the state dir;
#   - no CAP_SYS_RESOURCE: runc fails ("can't get final child's PID from pipe: EOF") unless
#     the CRI config sets restrict_oom_score_adj = true;
#   - cgroup v1: kubelet needs failCgroupV1: false and cgroupDriver: cgroupfs;
#   - no `dummy` network driver: the node address sits on an empty bridge (kdbnode0);
#   - no registry: images are built and imported locally, every pull is sent to
#     http://127.0.0.1:1 so it fails at once, image GC is set to 100/99 so they stay;
#   - pods live on bridge kdb0 (10.244.0.0/24, no gateway, no masquerade, ip_forward stays 0):
#     nothing can leave the machine; the host holds 10.244.0.1 on that bridge (DNS), so it
#     reaches pod IPs on-link, and pods reach nothing but each other and 10.244.0.1;
#   - kube-controller-manager started before the API server is ready exits, so it waits
#     for /readyz; /usr/bin/kubectl can hang: the kubectl built here is used, always under
#     `timeout`;
#   - kubelet changes vm.overcommit_memory, kernel.panic, kernel.panic_on_oops and
#     containerd/kubelet write a few paths outside the state dir: `down` restores them.
#
# CSI snapshot stack (test infrastructure, `csi-up`/`csi-down`; `up` runs csi-up unless
# KDB_CSI=0): the snapshot.storage.k8s.io CRDs, snapshot-controller, csi-snapshotter and
# csi-provisioner (external-snapshotter v8.7.0, external-provisioner v6.4.0, wrapper module
# csi/go.mod) and a hostPath CSI driver (csi/driver) that registers itself with kubelet, all
# host processes on the admin kubeconfig; StorageClass csi-hostpath (not default) and the
# default VolumeSnapshotClass csi-hostpath-snapclass.
#
# S3 server (test infrastructure, `s3-up`/`s3-down`; `up` runs s3-up unless KDB_S3=0): versitygw
# v1.8.0 (wrapper module s3/go.mod) with its posix backend under $STATE/s3/data, on 127.0.0.1
# only, with root credentials generated at first start into $STATE/s3/env (mode 0600; the
# integration tests and benches/s3.sh read the endpoint and keys from there).
#
# Usage: cluster.sh deps|build|up|down [--purge]|status|env|restart-apiserver [SECONDS]
#                   |csi-build|csi-up|csi-down [--purge]|s3-build|s3-up|s3-down [--purge]
#   KDB_CLUSTER_STATE (default /var/tmp/kubectl-db-cluster)  state, data, logs, kubeconfig
#   KDB_CACHE         (default ~/.cache/kubectl-db)          binaries and image tarballs
#   KDB_API_PORT      (default 16443)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${KDB_CLUSTER_STATE:-/var/tmp/kubectl-db-cluster}
CACHE=${KDB_CACHE:-$HOME/.cache/kubectl-db}
K8S_VERSION=v1.34.4
KREW_VERSION=v0.4.3  # tests/integration/krew.rs: the Krew release the plugins are installed with
BIN=$CACHE/k8s-$K8S_VERSION/bin
API_PORT=${KDB_API_PORT:-16443}
ETCD_PORT=${KDB_ETCD_PORT:-16379}
KUBELET_PORT=${KDB_KUBELET_PORT:-16250}
NODE_NAME=kdb-node
NODE_BRIDGE=kdbnode0
NODE_IP=10.245.0.1
POD_BRIDGE=kdb0
POD_SUBNET=10.244.0.0/24
DNS_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
SANDBOX_IMAGE=registry.k8s.io/pause:3.10.1
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
# Paths outside the state dir that containerd/kubelet create; removed by `down` if we did.
EXTERNAL_PATHS=(/run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni
                /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/log/pods)
APT_PACKAGES=(containerd runc containernetworking-plugins iptables iproute2 debootstrap umoci
              skopeo libnss-wrapper etcd-server etcd-client openssl util-linux ca-certificates curl
              zstd) # zstd: the unit tests run the in-pod compression script with it
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet provisioner coredns)

# CSI snapshot stack (csi/, `csi-up`): the hostPath CSI driver and the real sidecars.
CSI_DRIVER=csi-hostpath.kubectl-db.local
CSI_CLASS=csi-hostpath
CSI_SNAPSHOT_CLASS=csi-hostpath-snapclass
CSI_DAEMONS=(csi-driver csi-provisioner csi-snapshotter snapshot-controller)
CSI_TOOLS=(github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller
           github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter
           github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner)
CSI_CLIENT_MODULE=github.com/kubernetes-csi/external-snapshotter/client/v8
CSI_CACHE=$CACHE/csi
CSI_BIN=$CSI_CACHE/bin

# S3 server (s3/, `s3-up`).
S3_PORT=${KDB_S3_PORT:-17070}
S3_CACHE=$CACHE/s3
KUBECONFIG_FILE=$STATE/kubeconfig
PKI=$STATE/pki
RUN=$STATE/run
LOGS=$STATE/logs
CTRD=$STATE/containerd
CTRD_SOCK=$CTRD/containerd.sock
CSI_STATE=$STATE/csi
CSI_SOCK=$CSI_STATE/csi.sock
CSI_REG_SOCK=$STATE/kubelet/plugins_registry/$CSI_DRIVER-reg.sock
S3_STATE=$STATE/s3

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] ERROR: $*" >&2; exit 1; }

# phase NAME CMD... : run a phase and print its duration.
phase() {
  local name=$1 t0=$SECONDS; shift
  log "== $name"
  "$@"
  log "== $name done in $((SECONDS - t0))s"
}

kc() { timeout "${KC_TIMEOUT:-30}" "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr_() { timeout "${CTR_TIMEOUT:-120}" ctr --address "$CTRD_SOCK" "$@"; }

# wait_for DESCRIPTION SECONDS CMD... : poll CMD once a second.
wait_for() {
  local what=$1 limit=$2 i; shift 2
  for ((i = 0; i < limit; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "timed out after ${limit}s waiting for $what"
}

# --- processes -------------------------------------------------------------------------------
pid_of() { local f=$RUN/$1.pid; [[ -s $f ]] && cat "$f"; }
# alive NAME : the PID file's process exists and is still that daemon (PID files survive a
# reboot in /var/tmp; a recycled PID must not be taken for, or killed as, ours).
alive() {
  local pid
  pid=$(pid_of "$1") || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1"
}

# start NAME CMD... : start a daemon in the background, PID file = the daemon's own PID.
start() {
  local name=$1; shift
  if alive "$name"; then log "$name already running (pid $(pid_of "$name"))"; return 0; fi
  mkdir -p "$RUN" "$LOGS"
  nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  log "started $name (pid $!, log $LOGS/$name.log)"
}

# stop NAME : SIGTERM, wait up to 20 s, then SIGKILL.
stop() {
  local name=$1 pid i
  pid=$(pid_of "$name") || return 0
  if alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "$name did not stop, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

# PIDs of containerd shims serving our containerd (their argv names our socket).
our_shims() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/exe" 2>/dev/null) == *containerd-shim* ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-address $CTRD_SOCK " && echo "${p#/proc/}"
  done
  return 0
}

# --- deps ------------------------------------------------------------------------------------
cmd_deps() {
  [[ $(id -u) == 0 ]] || die "run as root"
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -qq update </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -qq -y install --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  fi
}

need_go() {
  command -v go >/dev/null || die "Go (>= 1.24) is needed to build the cluster binaries: put 'go' on PATH"
}

# --- build -----------------------------------------------------------------------------------
ldflags() {
  local f="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=34 -X $p.gitTreeState=clean"
    f+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  echo "$f"
}

build_k8s() {
  local c missing=()
  for c in "${COMPONENTS[@]}"; do [[ -x $BIN/$c ]] || missing+=("k8s.io/kubernetes/cmd/$c"); done
  ((${#missing[@]})) || { log "kubernetes $K8S_VERSION binaries cached in $BIN"; return 0; }
  need_go
  log "building ${missing[*]##*/} (cold: ~5-12 min on 2 cores)"
  mkdir -p "$BIN.tmp"
  (cd "$HERE/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "$(ldflags)" -o "$BIN.tmp/" "${missing[@]}")
  mkdir -p "$BIN"
  for c in "${missing[@]}"; do mv "$BIN.tmp/${c##*/}" "$BIN/"; done
  rmdir "$BIN.tmp" 2>/dev/null || true
}

build_provisioner() {
  # Rebuilt when its source changes (a few seconds with a warm Go cache).
  local sum out
  sum=$(sha256sum "$HERE/k8s/provisioner/main.go" "$HERE/k8s/go.sum" | sha256sum | cut -c1-12)
  out=$BIN/kdb-provisioner-$sum
  if [[ ! -x $out ]]; then
    need_go
    log "building provisioner"
    (cd "$HERE/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out.tmp" ./provisioner)
    mv "$out.tmp" "$out"
    find "$BIN" -maxdepth 1 -name 'kdb-provisioner-*' ! -name "${out##*/}" -delete
  fi
  ln -sfn "${out##*/}" "$BIN/kdb-provisioner"
}

build_coredns() {
  # Minimal CoreDNS from coredns/go.mod, rebuilt when that module changes.
  local sum out
  sum=$(cat "$HERE/coredns/main.go" "$HERE/coredns/go.mod" "$HERE/coredns/go.sum" | sha256sum | cut -c1-12)
  out=$BIN/kdb-coredns-$sum
  if [[ ! -x $out ]]; then
    need_go
    log "building coredns (cold: ~2-4 min)"
    (cd "$HERE/coredns" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out.tmp" .)
    mv "$out.tmp" "$out"
    find "$BIN" -maxdepth 1 -name 'kdb-coredns-*' ! -name "${out##*/}" -delete
  fi
  ln -sfn "${out##*/}" "$BIN/kdb-coredns"
}

# The CSI sidecars (keyed by csi/go.mod + go.sum; cold ~11 min on 2 busy cores), the
# snapshot CRDs copied from the client/v8 module beside them, and the driver (keyed by its
# source). Cached under $CSI_CACHE; bin/ holds symlinks to the current ones.
build_csi() {
  local dir=$HERE/csi sum sc drv t
  sum=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-12)
  sc=$CSI_CACHE/sidecars-$sum
  if [[ ! -x $sc/csi-provisioner || ! -x $sc/csi-snapshotter || ! -x $sc/snapshot-controller ||
        ! -s $sc/crd/snapshot.storage.k8s.io_volumesnapshots.yaml ]]; then
    need_go
    log "building ${CSI_TOOLS[*]##*/} (cold: ~11 min on 2 busy cores)"
    rm -rf "$sc.tmp"; mkdir -p "$sc.tmp/crd"
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$sc.tmp/" "${CSI_TOOLS[@]}")
    cp "$(cd "$dir" && go list -m -f '{{.Dir}}' "$CSI_CLIENT_MODULE")"/config/crd/*.storage.k8s.io_*.yaml "$sc.tmp/crd/"
    rm -rf "$sc"; mv "$sc.tmp" "$sc"
    find "$CSI_CACHE" -maxdepth 1 -name 'sidecars-*' ! -name "${sc##*/}" -exec rm -rf {} +
  fi
  sum=$(cat "$dir"/driver/*.go "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-12)
  drv=$CSI_CACHE/kdb-csi-driver-$sum
  if [[ ! -x $drv ]]; then
    need_go
    log "building the hostPath CSI driver"
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$drv.tmp" ./driver)
    mv "$drv.tmp" "$drv"
    find "$CSI_CACHE" -maxdepth 1 -name 'kdb-csi-driver-*' ! -name "${drv##*/}" -delete
  fi
  mkdir -p "$CSI_BIN"
  for t in "${CSI_TOOLS[@]}"; do ln -sfn "../${sc##*/}/${t##*/}" "$CSI_BIN/${t##*/}"; done
  ln -sfn "../${sc##*/}/crd" "$CSI_BIN/crd"
  ln -sfn "../${drv##*/}" "$CSI_BIN/kdb-csi-driver"
}

# versitygw (keyed by s3/go.mod + go.sum; cold ~4 min on 2 busy cores), cached under
# $S3_CACHE; $S3_CACHE/versitygw links to the current one.
build_s3() {
  local dir=$HERE/s3 sum out
  sum=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-12)
  out=$S3_CACHE/versitygw-$sum
  if [[ ! -x $out ]]; then
    need_go
    log "building versitygw (cold: ~4 min on 2 busy cores)"
    mkdir -p "$S3_CACHE"
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out.tmp" github.com/versity/versitygw/cmd/versitygw)
    mv "$out.tmp" "$out"
    find "$S3_CACHE" -maxdepth 1 -name 'versitygw-*' ! -name "${out##*/}" -delete
  fi
  ln -sfn "${out##*/}" "$S3_CACHE/versitygw"
}

build_krew() {
  # tests/integration/krew.rs installs the plugins with this Krew (it looks in $CACHE/krew/krew).
  [[ -x $CACHE/krew/krew ]] && { log "krew $KREW_VERSION cached in $CACHE/krew"; return 0; }
  need_go
  log "building krew $KREW_VERSION"
  mkdir -p "$CACHE/krew"
  GOBIN="$CACHE/krew" CGO_ENABLED=0 go install -trimpath -ldflags '-s -w' "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION"
}

build_images() {
  bash "$HERE/images/build-images.sh" >"$CACHE/images.list"
}

cmd_build() {
  phase "build kubernetes binaries" build_k8s
  phase "build provisioner" build_provisioner
  phase "build coredns" build_coredns
  phase "build krew" build_krew
  phase "build images" build_images
  if [[ ${KDB_CSI:-1} != 0 ]]; then phase "build csi" build_csi; fi
  if [[ ${KDB_S3:-1} != 0 ]]; then phase "build s3" build_s3; fi
}

# --- pki -------------------------------------------------------------------------------------
# cert NAME CN [O] [SAN] : key + certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 o=${3:-} san=${4:-} subj ext
  [[ -s $PKI/$name.crt ]] && return 0
  subj="/CN=$cn"; [[ -n $o ]] && subj="/O=$o$subj"
  ext=$PKI/$name.ext
  { echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $san ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi; } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
  chmod 600 "$PKI/$name.key"
}

# kubeconfig FILE CERTNAME USER
kubeconfig() {
  local file=$1 name=$2 user=$3
  [[ -s $file ]] && return 0
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubectl-db
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$name.crt")
    client-key-data: $(base64 -w0 <"$PKI/$name.key")
contexts:
- name: kubectl-db
  context: {cluster: kubectl-db, user: $user, namespace: default}
current-context: kubectl-db
EOF
  chmod 600 "$file"
}

setup_pki() {
  mkdir -p "$PKI"; chmod 700 "$PKI"
  if [[ ! -s $PKI/ca.crt ]]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=kubectl-db-cluster-ca" \
      -days 3650 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  if [[ ! -s $PKI/sa.key ]]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  cert apiserver kube-apiserver "" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:10.96.0.1"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert kubelet "system:node:$NODE_NAME" system:nodes
  kubeconfig "$KUBECONFIG_FILE" admin kubernetes-admin
  kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler
  kubeconfig "$STATE/kubelet.kubeconfig" kubelet "system:node:$NODE_NAME"
}

# --- host: bridges, sysctls, external paths --------------------------------------------------
setup_host() {
  # Remember what we change outside the state dir, once per up/down cycle.
  if [[ ! -s $STATE/sysctl.saved ]]; then
    local s; for s in "${SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$STATE/sysctl.saved"
  fi
  if [[ ! -e $STATE/external.created ]]; then
    local p; for p in "${EXTERNAL_PATHS[@]}"; do [[ -e $p ]] || echo "$p"; done >"$STATE/external.created"
  fi
  # The node address on an empty bridge (no dummy driver on this kernel).
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/32" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # The pod bridge, created before the CNI plugin would, with the DNS address on it.
  if ! ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
    ip link add "$POD_BRIDGE" type bridge
  fi
  ip addr replace "$DNS_IP/24" dev "$POD_BRIDGE"
  ip link set "$POD_BRIDGE" up
}

# --- etcd --------------------------------------------------------------------------------------
start_etcd() {
  mkdir -p "$STATE/etcd"; chmod 700 "$STATE/etcd"
  start etcd etcd --name kdb --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "kdb=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --quota-backend-bytes 2147483648 --logger zap --log-level warn
  wait_for "etcd health" 30 etcd_healthy
}
etcd_healthy() {
  ETCDCTL_API=3 timeout 5 etcdctl --endpoints "127.0.0.1:$ETCD_PORT" endpoint health
}

# --- control plane ---------------------------------------------------------------------------
start_apiserver() {
  start kube-apiserver "$BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address="$NODE_IP" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 90 kc get --raw /readyz
}

start_controller_manager() {
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
    --controllers='*,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller' \
    --profiling=false --v=1
}

start_scheduler() {
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --profiling=false --v=1
}

# --- containerd --------------------------------------------------------------------------------
write_containerd_config() {
  mkdir -p "$CTRD/root" "$CTRD/state" "$CTRD/certs.d/_default" "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  # No CAP_SYS_RESOURCE here: without this runc fails with "can't get final child's PID".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    # Every registry -> http://127.0.0.1:1: a pull fails at once instead of hanging.
    config_path = "$CTRD/certs.d"
EOF
  local r
  for r in _default docker.io registry-1.docker.io registry.k8s.io k8s.gcr.io gcr.io quay.io ghcr.io localhost; do
    mkdir -p "$CTRD/certs.d/$r"
    printf 'server = "http://127.0.0.1:1"\n\n[host."http://127.0.0.1:1"]\n  capabilities = ["pull", "resolve"]\n' \
      >"$CTRD/certs.d/$r/hosts.toml"
  done
  # Pod network: a bridge that routes nowhere; host-local IPAM keeps its data under state.
  cat >"$STATE/cni/net.d/10-kdb.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kdb",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "${POD_SUBNET%.0/24}.10"}]],
        "dataDir": "$STATE/cni/ipam"
      }
    }
  ]
}
EOF
}

start_containerd() {
  write_containerd_config
  start containerd containerd --config "$CTRD/config.toml" --log-level warn
  wait_for "containerd socket" 30 ctr_ version
}

# Import the image tarballs whose content containerd does not have yet.
import_images() {
  [[ -s $CACHE/images.list ]] || build_images
  mkdir -p "$CTRD"; touch "$CTRD/images.imported"
  local tar key imported=0
  while read -r tar; do
    [[ -s $tar ]] || die "image tarball $tar missing: run '$0 build'"
    key=${tar##*/}
    if grep -qxF "$key" "$CTRD/images.imported" && image_tags_present "$tar"; then continue; fi
    log "importing ${tar##*/}"
    ctr_ -n k8s.io images import --all-platforms "$tar" >/dev/null
    echo "$key" >>"$CTRD/images.imported"
    imported=1
  done <"$CACHE/images.list"
  if ((imported)); then prune_old_images; fi
}

# After a rebuilt image is imported, its previous version stays behind under the CRI's
# `sha256:<id>` reference (image GC is off here): remove ID references whose manifest no
# tag points to any more, so containerd's GC frees the disk.
prune_old_images() {
  local refs ref
  refs=$(ctr_ -n k8s.io images ls | awk 'NR > 1 {print $1, $3}')
  for ref in $(awk '$1 !~ /^sha256:/ {tagged[$2] = 1} $1 ~ /^sha256:/ {id[$1] = $2}
                    END {for (r in id) if (!(id[r] in tagged)) print r}' <<<"$refs"); do
    log "removing previous image version $ref"
    ctr_ -n k8s.io images rm --sync "$ref" >/dev/null || true
  done
}
image_tags_present() {
  local name=${1##*/} t have
  name=${name%-*}
  have=$(ctr_ -n k8s.io images ls -q)
  for t in $(bash "$HERE/images/build-images.sh" --tags "$name"); do
    grep -qxF "$t" <<<"$have" || return 1
  done
}

# --- kubelet -----------------------------------------------------------------------------------
write_kubelet_config() {
  mkdir -p "$STATE/kubelet" "$LOGS/pods"
  cat >"$STATE/kubelet-config.yaml.new" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
containerRuntimeEndpoint: unix://$CTRD_SOCK
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
podLogsDir: $LOGS/pods
serializeImagePulls: false
registerNode: true
EOF
}

start_kubelet() {
  write_kubelet_config
  # A running kubelet with an older configuration is restarted (its pods keep running).
  if ! cmp -s "$STATE/kubelet-config.yaml.new" "$STATE/kubelet-config.yaml"; then
    if alive kubelet; then log "kubelet configuration changed: restarting kubelet"; stop kubelet; fi
    mv "$STATE/kubelet-config.yaml.new" "$STATE/kubelet-config.yaml"
  else
    rm -f "$STATE/kubelet-config.yaml.new"
  fi
  start kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" \
    --cert-dir="$STATE/kubelet/pki" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
}

# --- storage -----------------------------------------------------------------------------------
start_provisioner() {
  mkdir -p "$STATE/volumes"
  start provisioner "$BIN/kdb-provisioner" --kubeconfig "$KUBECONFIG_FILE" --root "$STATE/volumes"
}

apply_storageclass() {
  kc apply -f - >/dev/null <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubectl-db.local/hostpath
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
}

# --- dns ---------------------------------------------------------------------------------------
start_coredns() {
  mkdir -p "$STATE/coredns"
  cat >"$STATE/coredns/Corefile" <<EOF
.:53 {
    bind $DNS_IP
    errors
    cache 30
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_FILE kubectl-db
        pods insecure
        ttl 30
    }
}
EOF
  start coredns "$BIN/kdb-coredns" -conf "$STATE/coredns/Corefile"
}

# --- CSI snapshot stack ----------------------------------------------------------------------
csi_enabled() { [[ -e $CSI_STATE/enabled ]]; }

SNAPSHOT_CRDS=(volumesnapshots.snapshot.storage.k8s.io volumesnapshotcontents.snapshot.storage.k8s.io
               volumesnapshotclasses.snapshot.storage.k8s.io
               volumegroupsnapshots.groupsnapshot.storage.k8s.io
               volumegroupsnapshotcontents.groupsnapshot.storage.k8s.io
               volumegroupsnapshotclasses.groupsnapshot.storage.k8s.io)

apply_snapshot_crds() {
  local f c
  # Remember which CRDs csi-up created, so `csi-down --purge` removes only those.
  mkdir -p "$CSI_STATE"
  for c in "${SNAPSHOT_CRDS[@]}"; do
    kc get crd "$c" >/dev/null 2>&1 || echo "$c" >>"$CSI_STATE/crds.created"
  done
  for f in "$CSI_BIN"/crd/*.yaml; do
    # Server-side: the VolumeSnapshotContent CRD is too big for the last-applied annotation.
    KC_TIMEOUT=60 kc apply --server-side --force-conflicts -f "$f" >/dev/null
  done
  KC_TIMEOUT=60 kc wait --for condition=established --timeout=50s "${SNAPSHOT_CRDS[@]/#/crd/}" >/dev/null
}

apply_csi_objects() {
  # attachRequired false: there is no external-attacher; fsGroupPolicy File: kubelet applies
  # a pod's fsGroup to the volume, as on a real block-backed CSI volume.
  kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: $CSI_DRIVER
spec:
  attachRequired: false
  podInfoOnMount: false
  fsGroupPolicy: File
  volumeLifecycleModes: [Persistent]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $CSI_CLASS
provisioner: $CSI_DRIVER
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: $CSI_SNAPSHOT_CLASS
  annotations:
    snapshot.storage.kubernetes.io/is-default-class: "true"
driver: $CSI_DRIVER
deletionPolicy: Delete
EOF
}

csi_registered() {
  kc get csinode "$NODE_NAME" -o 'jsonpath={.spec.drivers[*].name}' | tr ' ' '\n' | grep -qxF "$CSI_DRIVER"
}

start_csi() {
  mkdir -p "$CSI_STATE" "$STATE/kubelet/plugins_registry"
  start csi-driver "$CSI_BIN/kdb-csi-driver" --endpoint "$CSI_SOCK" --root "$CSI_STATE" \
    --node-id "$NODE_NAME" --registration-dir "$STATE/kubelet/plugins_registry" --name "$CSI_DRIVER"
  wait_for "CSI driver socket" 30 test -S "$CSI_SOCK"
  wait_for "CSI driver registered with kubelet (CSINode $NODE_NAME)" 60 csi_registered
  start csi-provisioner "$CSI_BIN/csi-provisioner" --csi-address="$CSI_SOCK" \
    --kubeconfig="$KUBECONFIG_FILE" --leader-election=false --timeout=60s --v=2
  start csi-snapshotter "$CSI_BIN/csi-snapshotter" --csi-address="$CSI_SOCK" \
    --kubeconfig="$KUBECONFIG_FILE" --leader-election=false --timeout=60s --v=2
  start snapshot-controller "$CSI_BIN/snapshot-controller" --kubeconfig="$KUBECONFIG_FILE" \
    --leader-election=false --v=2
  sleep 2
  check_csi_processes
}

check_csi_processes() {
  local n bad=0
  for n in "${CSI_DAEMONS[@]}"; do
    alive "$n" || { log "$n is not running: see $LOGS/$n.log"; bad=1; }
  done
  ((bad == 0)) || die "some CSI components are not running"
}

# csi-up: on a running cluster (also run by every `up` unless KDB_CSI=0).
cmd_csi_up() {
  local t0=$SECONDS
  [[ $(id -u) == 0 ]] || die "run as root"
  alive kube-apiserver && alive kubelet || die "the cluster is not running: run '$0 up' first"
  phase "build csi (cached)" build_csi
  phase "snapshot CRDs" apply_snapshot_crds
  phase "CSIDriver, StorageClass $CSI_CLASS, VolumeSnapshotClass $CSI_SNAPSHOT_CLASS" apply_csi_objects
  mkdir -p "$CSI_STATE"; touch "$CSI_STATE/enabled"
  phase "csi driver + sidecars" start_csi
  log "csi up in $((SECONDS - t0))s — StorageClass $CSI_CLASS, VolumeSnapshotClass $CSI_SNAPSHOT_CLASS (default)"
}

stop_csi_sidecars() { stop snapshot-controller; stop csi-snapshotter; stop csi-provisioner; }
stop_csi_driver() {
  stop csi-driver
  rm -f "$CSI_SOCK" "$CSI_REG_SOCK"
}

# csi-down [--purge]: stop the CSI processes. Volumes, snapshots and API objects stay, so a
# later csi-up serves them again (a pod still using a CSI volume keeps its bind mount).
# --purge also deletes the CSI classes, the CSIDriver, the volume/snapshot data and the
# snapshot CRDs csi-up created (so `dbbackup snapshot` sees "no VolumeSnapshot API" again);
# it refuses while PVs or VolumeSnapshotContents of the driver, or any VolumeSnapshot,
# exist.
cmd_csi_down() {
  local purge=${1:-} left c
  [[ $(id -u) == 0 ]] || die "run as root"
  if [[ $purge == --purge ]] && alive kube-apiserver; then
    left=$(kc get pv -o jsonpath="{range .items[?(@.spec.csi.driver==\"$CSI_DRIVER\")]}{.metadata.name} {end}")
    left+=$(kc get volumesnapshotcontents -o jsonpath="{range .items[?(@.spec.driver==\"$CSI_DRIVER\")]}{.metadata.name} {end}" 2>/dev/null || true)
    left+=$(kc get volumesnapshots -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {end}' 2>/dev/null || true)
    [[ -z ${left// /} ]] || die "csi-down --purge: delete these first (PVCs/VolumeSnapshots using them): $left"
  fi
  stop_csi_sidecars
  stop_csi_driver
  rm -f "$CSI_STATE/enabled"
  if [[ $purge == --purge ]]; then
    if alive kube-apiserver; then
      kc delete volumesnapshotclass "$CSI_SNAPSHOT_CLASS" --ignore-not-found >/dev/null 2>&1 || true
      kc delete storageclass "$CSI_CLASS" --ignore-not-found >/dev/null
      kc delete csidriver "$CSI_DRIVER" --ignore-not-found >/dev/null
      if [[ -s $CSI_STATE/crds.created ]]; then
        for c in $(sort -u "$CSI_STATE/crds.created"); do
          KC_TIMEOUT=60 kc delete crd "$c" --ignore-not-found >/dev/null
        done
      fi
    fi
    rm -rf "$CSI_STATE"
  fi
  log "csi down"
}

csi_status() {
  local n rc=0
  for n in "${CSI_DAEMONS[@]}"; do
    if alive "$n"; then printf '%-24s running (pid %s)\n' "$n" "$(pid_of "$n")"
    elif csi_enabled; then printf '%-24s stopped\n' "$n"; rc=1
    else printf '%-24s off (cluster.sh csi-up; `up` starts it unless KDB_CSI=0)\n' "$n"; fi
  done
  return $rc
}

# --- S3 server -------------------------------------------------------------------------------
# The credentials are random per state dir and reach versitygw through its environment, never
# its argv (ps shows argv to every user).
s3_credentials() {
  [[ -s $S3_STATE/env ]] && return 0
  mkdir -p "$S3_STATE"
  (umask 077
   { echo "S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
     echo "S3_REGION=us-east-1"
     echo "S3_ACCESS_KEY_ID=kdb$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
     echo "S3_SECRET_ACCESS_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
   } >"$S3_STATE/env.tmp")
  mv "$S3_STATE/env.tmp" "$S3_STATE/env"
}

s3_healthy() { curl -fsS -o /dev/null "http://127.0.0.1:$S3_PORT/health"; }

# s3-up: runs without the cluster (the dump streams from the client, not from a pod).
cmd_s3_up() {
  [[ $(id -u) == 0 ]] || die "run as root"
  phase "build s3 (cached)" build_s3
  s3_credentials
  mkdir -p "$S3_STATE/data" "$RUN" "$LOGS"
  if ! alive versitygw; then
    # shellcheck disable=SC1091
    (set -a; . "$S3_STATE/env"; set +a
     export ROOT_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY
     unset S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY
     start versitygw "$S3_CACHE/versitygw" --port "127.0.0.1:$S3_PORT" --region us-east-1 \
       --health /health --quiet posix "$S3_STATE/data")
  fi
  wait_for "S3 server on 127.0.0.1:$S3_PORT" 30 s3_healthy
  touch "$S3_STATE/enabled"
  log "s3 up — endpoint http://127.0.0.1:$S3_PORT, credentials in $S3_STATE/env"
}

# s3-down [--purge]: stop the server; --purge also deletes its buckets and credentials.
cmd_s3_down() {
  stop versitygw
  rm -f "$S3_STATE/enabled"
  if [[ ${1:-} == --purge ]]; then rm -rf "$S3_STATE"; fi
  log "s3 down"
}

s3_status() {
  if alive versitygw; then printf '%-24s running (pid %s, http://127.0.0.1:%s, credentials %s)\n' versitygw "$(pid_of versitygw)" "$S3_PORT" "$S3_STATE/env"
  elif [[ -e $S3_STATE/enabled ]]; then printf '%-24s stopped\n' versitygw; return 1
  else printf '%-24s off (cluster.sh s3-up; `up` starts it unless KDB_S3=0)\n' versitygw; fi
}

# --- up / down / status --------------------------------------------------------------------
node_ready() {
  [[ $(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
default_sa() { kc -n default get serviceaccount default; }
default_sc() {
  [[ $(kc get storageclass standard -o 'jsonpath={.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}') == true ]]
}

cmd_up() {
  local t0=$SECONDS
  [[ $(id -u) == 0 ]] || die "run as root"
  phase deps cmd_deps
  phase "build (cached)" cmd_build
  mkdir -p "$STATE" "$RUN" "$LOGS"
  phase "pki" setup_pki
  phase "host network" setup_host
  phase "etcd" start_etcd
  phase "kube-apiserver" start_apiserver
  phase "controller-manager + scheduler" eval 'start_controller_manager; start_scheduler'
  phase "containerd" start_containerd
  phase "images" import_images
  phase "kubelet" eval 'start_kubelet; wait_for "node Ready" 120 node_ready'
  phase "storage" eval 'start_provisioner; apply_storageclass; wait_for "default StorageClass" 30 default_sc'
  phase "dns" start_coredns
  phase "default ServiceAccount" wait_for "default ServiceAccount" 60 default_sa
  check_processes
  # The CSI snapshot stack is part of the cluster (VolumeSnapshots are tested end to end);
  # KDB_CSI=0 leaves it out, for a cluster without the snapshot API.
  if [[ ${KDB_CSI:-1} != 0 ]]; then phase "csi snapshot stack" cmd_csi_up; fi
  # The S3 server for `dbbackup -f s3://` (tests/integration/s3.rs); KDB_S3=0 leaves it out.
  if [[ ${KDB_S3:-1} != 0 ]]; then phase "s3 server" cmd_s3_up; fi
  log "cluster up in $((SECONDS - t0))s — API https://127.0.0.1:$API_PORT"
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
}

check_processes() {
  local n bad=0
  for n in "${DAEMONS[@]}"; do
    alive "$n" || { log "$n is not running: see $LOGS/$n.log"; bad=1; }
  done
  ((bad == 0)) || die "some components are not running"
}

# Remove all pods: stop controllers so nothing comes back, let kubelet tear sandboxes down
# (CNI DEL, netns), then remove whatever is left straight from containerd.
remove_pods() {
  if alive kube-apiserver && alive kubelet; then
    stop kube-controller-manager; stop kube-scheduler; stop provisioner; stop coredns
    stop_csi_sidecars
    KC_TIMEOUT=30 kc delete pods --all --all-namespaces --force --grace-period=0 --wait=false >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 30; i++)); do
      [[ -z $(ctr_ -n k8s.io tasks ls -q 2>/dev/null) ]] && break
      sleep 1
    done
  fi
  stop kubelet
  # The CSI driver outlives kubelet: kubelet unpublishes CSI volumes while tearing pods down.
  stop_csi_sidecars; stop_csi_driver
  if alive containerd; then
    local id
    for id in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do
      ctr_ -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 1
    for id in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do
      ctr_ -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr_ -n k8s.io containers ls -q 2>/dev/null); do
      ctr_ -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
}

unmount_state() {
  local m i
  for ((i = 0; i < 3; i++)); do
    # Mount points under the state dir, deepest first (mountinfo field 5, octal-escaped).
    mapfile -t mounts < <(awk -v s="$STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r -u)
    ((${#mounts[@]})) || return 0
    for m in "${mounts[@]}"; do
      m=$(printf '%b' "$m")
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  awk -v s="$STATE/" 'index($5, s) == 1 {print "[cluster] still mounted: " $5}' /proc/self/mountinfo >&2
}

restore_host() {
  if [[ -s $STATE/sysctl.saved ]]; then
    local kv; while read -r kv; do sysctl -q -w "$kv" >/dev/null || true; done <"$STATE/sysctl.saved"
    rm -f "$STATE/sysctl.saved"
  fi
  local b
  for b in "$POD_BRIDGE" "$NODE_BRIDGE"; do ip link del "$b" 2>/dev/null || true; done
  if [[ -f $STATE/external.created ]]; then
    local p
    while read -r p; do
      [[ -n $p && -e $p ]] || continue
      case $p in
        /run/containerd/s) rm -rf "$p" ;;
        *) rmdir "$p" 2>/dev/null || rm -rf "${p:?}/"* 2>/dev/null || true; rmdir "$p" 2>/dev/null || true ;;
      esac
    done <"$STATE/external.created"
    rm -f "$STATE/external.created"
  fi
  # cgroups kubelet created (cgroupfs driver): empty once its pods are gone.
  local d
  for d in /sys/fs/cgroup/*/kubepods; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

cmd_down() {
  local t0=$SECONDS purge=${1:-}
  [[ $(id -u) == 0 ]] || die "run as root"
  [[ -d $STATE ]] || { log "nothing to do: $STATE does not exist"; return 0; }
  phase "remove pods" remove_pods
  phase "stop s3" cmd_s3_down
  phase "stop control plane" eval 'stop coredns; stop provisioner; stop kube-scheduler; stop kube-controller-manager; stop kube-apiserver; stop etcd'
  phase "stop containerd" stop_containerd
  phase "unmount" unmount_state
  phase "restore host" restore_host
  # Cluster data goes; the containerd image store stays (fast warm `up`) unless --purge.
  rm -rf "$STATE/etcd" "$STATE/kubelet" "$STATE/volumes" "$STATE/cni" "$LOGS" "$RUN" \
         "$CTRD/state" "$STATE/pki" "$STATE"/*.kubeconfig "$KUBECONFIG_FILE" "$STATE/kubelet-config.yaml" "$STATE/coredns" \
         "$CSI_STATE" "$S3_STATE"
  if [[ $purge == --purge ]]; then rm -rf "$STATE"; fi
  log "cluster down in $((SECONDS - t0))s"
}

stop_containerd() {
  stop containerd
  local p
  for p in $(our_shims); do kill -KILL "$p" 2>/dev/null || true; done
}

cmd_status() {
  local n rc=0
  for n in "${DAEMONS[@]}"; do
    if alive "$n"; then printf '%-24s running (pid %s)\n' "$n" "$(pid_of "$n")"
    else printf '%-24s stopped\n' "$n"; rc=1; fi
  done
  csi_status || rc=1
  s3_status || rc=1
  if alive kube-apiserver; then
    kc get nodes -o wide 2>&1 || rc=1
    kc get storageclass 2>&1 || true
    if kc get crd volumesnapshotclasses.snapshot.storage.k8s.io >/dev/null 2>&1; then
      kc get volumesnapshotclass 2>&1 || true
    fi
  fi
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  return $rc
}

# restart-apiserver [SECONDS]: kill kube-apiserver (SIGKILL, like a crash: a graceful stop
# takes ~20 s here), keep it down SECONDS (default 5), start it again and wait for /readyz.
# For the control-plane fault tests (tests/safety_faults.rs).
cmd_restart_apiserver() {
  local down=${1:-5} pid
  [[ $down =~ ^[0-9]+$ ]] || die "restart-apiserver: SECONDS must be a whole number"
  alive kube-apiserver || die "kube-apiserver is not running"
  pid=$(pid_of kube-apiserver)
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$RUN/kube-apiserver.pid"
  log "killed kube-apiserver (pid $pid); down for ${down}s"
  sleep "$down"
  start_apiserver
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    deps) cmd_deps ;;
    build) cmd_deps; cmd_build ;;
    up) cmd_up ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    csi-build) build_csi ;;
    csi-up) cmd_csi_up ;;
    csi-down) cmd_csi_down "$@" ;;
    s3-build) build_s3 ;;
    s3-up) cmd_s3_up ;;
    s3-down) cmd_s3_down "$@" ;;
    *) echo "usage: $0 deps|build|up|down [--purge]|status|env|restart-apiserver [SECONDS]|csi-build|csi-up|csi-down [--purge]|s3-build|s3-up|s3-down [--purge]" >&2; exit 2 ;;
  esac
}

main "$@"
