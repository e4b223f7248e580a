#!/usr/bin/env bash
# Smoke test of the local cluster's CSI snapshot stack (`cluster.sh csi-up` must have run):
#   - the VolumeSnapshot CRDs are served, StorageClass csi-hostpath exists and is not the
#     default (`standard` stays the default), csi-hostpath-snapclass is the default
#     VolumeSnapshotClass, and the driver is registered on the node (CSINode);
#   - a PVC of class csi-hostpath is provisioned by csi-provisioner through the driver, bound
#     and bind-mounted into a non-root pod (restricted-PSA shape), which writes a file;
#   - a VolumeSnapshot of it (default class) becomes readyToUse, with a bound
#     VolumeSnapshotContent of our driver and a restore size;
#   - the source file is then changed, so the restore must come from the snapshot;
#   - a new PVC with that snapshot as dataSource is bound and a pod reads the file back with
#     the content of the time of the snapshot;
#   - deleting claims and snapshot removes the PVs and VolumeSnapshotContents (reclaim and
#     deletion policy Delete) and the driver's directories and archives.
# Everything lives in a throwaway namespace that is deleted on exit. Exits non-zero with a
# message on the first failure. Env: KUBECONFIG (default: the cluster's), KDB_SMOKE_KEEP=1
# keeps the namespace for debugging.
set -euo pipefail

STATE=${KDB_CLUSTER_STATE:-/var/tmp/kubectl-db-cluster}
CACHE=${KDB_CACHE:-$HOME/.cache/kubectl-db}
KUBECTL=${KDB_KUBECTL:-$CACHE/k8s-v1.34.4/bin/kubectl}
export KUBECONFIG=${KUBECONFIG:-$STATE/kubeconfig}
DRIVER=csi-hostpath.kubectl-db.local
CLASS=csi-hostpath
SNAPCLASS=csi-hostpath-snapclass
NS=kdb-csi-smoke-$$-$RANDOM
T0=$SECONDS

log() { echo "[csi-smoke $((SECONDS - T0))s] $*" >&2; }
fail() {
  echo "[csi-smoke] FAIL: $*" >&2
  exit 1
}
kc() { timeout "${KC_TIMEOUT:-60}" "$KUBECTL" "$@"; }
k() { kc -n "$NS" "$@"; }

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    echo "[csi-smoke] --- diagnostics for namespace $NS" >&2
    k get pods,pvc,volumesnapshot -o wide >&2 2>&1 || true
    k get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 25 >&2 || true
    tail -n 15 "$STATE"/logs/csi-*.log "$STATE"/logs/snapshot-controller.log >&2 2>/dev/null || true
  fi
  if [[ ${KDB_SMOKE_KEEP:-} == 1 ]]; then
    log "keeping namespace $NS"
  else
    KC_TIMEOUT=150 kc delete namespace "$NS" --wait=true --timeout=140s >/dev/null 2>&1 ||
      echo "[csi-smoke] warning: namespace $NS not deleted cleanly" >&2
  fi
  if ((rc == 0)); then log "PASS"; else echo "[csi-smoke] FAILED (exit $rc)" >&2; fi
  exit $rc
}

# wait_until DESCRIPTION SECONDS CMD...
wait_until() {
  local what=$1 limit=$2 i; shift 2
  for ((i = 0; i < limit; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  fail "timed out after ${limit}s: $what"
}

pvc() { # pvc NAME [SNAPSHOT]
  cat <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1}
spec:
  storageClassName: $CLASS
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
EOF
  if [[ -n ${2:-} ]]; then
    cat <<EOF
  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: $2}
EOF
  fi
}

# A pod that fits the restricted Pod Security Standard, so the test holds in namespaces that
# enforce it; fsGroup exercises the CSIDriver's fsGroupPolicy File.
pod() { # pod NAME CLAIM SCRIPT
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    fsGroup: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: localhost/kdb/tools:1
    imagePullPolicy: IfNotPresent
    command: [sh, -c, '$3']
    volumeMounts: [{name: data, mountPath: /data}]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: $2}
EOF
}

pod_succeeded() { [[ $(k get pod "$1" -o 'jsonpath={.status.phase}') == Succeeded ]]; }
pod_failed() { [[ $(k get pod "$1" -o 'jsonpath={.status.phase}') == Failed ]]; }
wait_pod_done() { # NAME SECONDS
  local i
  for ((i = 0; i < $2; i++)); do
    pod_succeeded "$1" && return 0
    pod_failed "$1" && fail "pod $1 failed: $(k logs "$1" 2>&1 | tail -n 5)"
    sleep 1
  done
  fail "timed out after $2s: pod $1 to finish"
}
pvc_bound() { [[ $(k get pvc "$1" -o 'jsonpath={.status.phase}') == Bound ]]; }
snapshot_ready() { [[ $(k get volumesnapshot "$1" -o 'jsonpath={.status.readyToUse}') == true ]]; }

main() {
  trap cleanup EXIT
  [[ -s $KUBECONFIG ]] || fail "no kubeconfig at $KUBECONFIG: is the cluster up?"

  log "CRDs, classes, driver registration"
  local crd
  for crd in volumesnapshots volumesnapshotcontents volumesnapshotclasses; do
    kc get crd "$crd.snapshot.storage.k8s.io" >/dev/null 2>&1 ||
      fail "CRD $crd.snapshot.storage.k8s.io missing: run 'cluster.sh csi-up'"
  done
  [[ $(kc get storageclass "$CLASS" -o 'jsonpath={.provisioner}') == "$DRIVER" ]] ||
    fail "StorageClass $CLASS missing or not of $DRIVER"
  [[ $(kc get storageclass "$CLASS" -o 'jsonpath={.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}') != true ]] ||
    fail "StorageClass $CLASS must not be the default"
  [[ $(kc get storageclass standard -o 'jsonpath={.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}') == true ]] ||
    fail "StorageClass standard is no longer the default"
  [[ $(kc get volumesnapshotclass "$SNAPCLASS" -o 'jsonpath={.driver}/{.metadata.annotations.snapshot\.storage\.kubernetes\.io/is-default-class}') == "$DRIVER/true" ]] ||
    fail "VolumeSnapshotClass $SNAPCLASS missing, not of $DRIVER, or not the default"
  kc get csinode -o 'jsonpath={.items[*].spec.drivers[*].name}' | tr ' ' '\n' | grep -xF "$DRIVER" >/dev/null ||
    fail "driver $DRIVER is not registered on any node (CSINode)"

  kc create namespace "$NS" >/dev/null
  wait_until "default ServiceAccount in $NS" 30 k get serviceaccount default

  log "PVC on $CLASS, a pod writes a file"
  pvc src | k apply -f - >/dev/null
  pod writer src 'echo snapshot-me-$(date +%s) > /data/file && cat /data/file && ls -ln /data' | k apply -f - >/dev/null
  wait_until "PVC src bound" 90 pvc_bound src
  wait_pod_done writer 120
  local written pv
  # sed, not head: head's early exit would SIGPIPE kubectl, which pipefail turns into exit 141.
  written=$(k logs writer | sed -n 1p)
  [[ $written == snapshot-me-* ]] || fail "writer printed '$written'"
  pv=$(k get pvc src -o 'jsonpath={.spec.volumeName}')
  [[ $(kc get pv "$pv" -o 'jsonpath={.spec.csi.driver}') == "$DRIVER" ]] || fail "PV $pv is not a CSI volume of $DRIVER"
  [[ -f $STATE/csi/volumes/$pv/file ]] || fail "the file is not in the driver's directory $STATE/csi/volumes/$pv"
  log "wrote '$written' into $pv"

  log "VolumeSnapshot of it (default class)"
  k apply -f - >/dev/null <<EOF
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap}
spec:
  source: {persistentVolumeClaimName: src}
EOF
  wait_until "VolumeSnapshot snap readyToUse" 90 snapshot_ready snap
  local content
  content=$(k get volumesnapshot snap -o 'jsonpath={.status.boundVolumeSnapshotContentName}')
  [[ $(k get volumesnapshot snap -o 'jsonpath={.spec.volumeSnapshotClassName}') == "$SNAPCLASS" ]] ||
    fail "the snapshot did not get the default class $SNAPCLASS"
  [[ $(kc get volumesnapshotcontent "$content" -o 'jsonpath={.spec.driver}') == "$DRIVER" ]] ||
    fail "VolumeSnapshotContent $content is not of $DRIVER"
  [[ -n $(k get volumesnapshot snap -o 'jsonpath={.status.restoreSize}') ]] || fail "no restoreSize on the snapshot"
  log "snapshot ready: content $content, creationTime $(k get volumesnapshot snap -o 'jsonpath={.status.creationTime}')"

  log "change the source after the snapshot"
  pod changer src 'echo changed-after > /data/file' | k apply -f - >/dev/null
  wait_pod_done changer 120

  log "restore: a PVC from the snapshot, a pod reads the file back"
  pvc restored snap | k apply -f - >/dev/null
  pod reader restored 'cat /data/file' | k apply -f - >/dev/null
  wait_until "PVC restored bound" 90 pvc_bound restored
  wait_pod_done reader 120
  local read
  read=$(k logs reader)
  [[ $read == "$written" ]] || fail "restored file holds '$read', expected '$written'"
  log "read back '$read' from $(k get pvc restored -o 'jsonpath={.spec.volumeName}')"

  log "delete: PVs, VolumeSnapshotContent and the driver's data go"
  local pv2 snapid
  pv2=$(k get pvc restored -o 'jsonpath={.spec.volumeName}')
  snapid=$(kc get volumesnapshotcontent "$content" -o 'jsonpath={.status.snapshotHandle}')
  [[ -f $STATE/csi/snapshots/$snapid.tar ]] || fail "no archive $STATE/csi/snapshots/$snapid.tar"
  k delete pod --all --wait=true --timeout=60s >/dev/null
  k delete volumesnapshot snap --wait=true --timeout=60s >/dev/null
  k delete pvc src restored --wait=true --timeout=60s >/dev/null
  wait_until "PVs $pv $pv2 deleted" 60 bash -c "! timeout 10 '$KUBECTL' get pv $pv $pv2 -o name 2>/dev/null | grep -q ."
  wait_until "VolumeSnapshotContent $content deleted" 60 bash -c "! timeout 10 '$KUBECTL' get volumesnapshotcontent $content >/dev/null 2>&1"
  [[ ! -e $STATE/csi/volumes/$pv && ! -e $STATE/csi/volumes/$pv2 ]] || fail "volume directories left behind"
  [[ ! -e $STATE/csi/snapshots/$snapid.tar ]] || fail "snapshot archive left behind"
}

main "$@"
