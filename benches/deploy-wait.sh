#!/usr/bin/env bash
# How much time `dbdeploy` adds on top of the pod's own start: its wall time against the
# moment a separate `kubectl get -w` saw the pod Ready, in the same run. Overhead after
# Ready is the wait's reaction time plus the version query; target under 0.5 s (no polling
# sleeps). Needs a cluster: KUBECONFIG, or the local one (tests/cluster/cluster.sh up).
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBECONFIG=${KUBECONFIG:-/var/tmp/kubectl-db-cluster/kubeconfig}
KUBECTL=${KUBECTL:-$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl}
IMAGE=${IMAGE:-localhost/kdb/postgres:15}
NS=kdb-bench-$$
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --locked -q
timeout 30 "$KUBECTL" create namespace "$NS" >/dev/null
trap 'timeout 60 "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
until timeout 10 "$KUBECTL" -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.2; done

log=$(mktemp)
# Print a wall-clock timestamp for every watch event that shows the pod Ready.
( timeout 300 "$KUBECTL" -n "$NS" get pods -l app=postgres -w \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}{"\n"}' 2>/dev/null |
  while read -r ready; do [[ $ready == True ]] && date +%s.%N >>"$log"; done ) &
watch_pid=$!
sleep 1
start=$(date +%s.%N)
target/release/kubectl-dbdeploy -n "$NS" postgres --image "$IMAGE" --cpu 50m --memory 128Mi \
  --storage-size 1Gi -q >/dev/null
end=$(date +%s.%N)
kill "$watch_pid" 2>/dev/null || true
ready=$(head -n1 "$log")
rm -f "$log"
printf '%-40s %8.2f s\n' "dbdeploy wall time" "$(awk "BEGIN{print $end-$start}")"
printf '%-40s %8.2f s\n' "pod Ready (seen by kubectl -w) after start" "$(awk "BEGIN{print $ready-$start}")"
printf '%-40s %8.2f s\n' "dbdeploy overhead after Ready" "$(awk "BEGIN{print $end-$ready}")"
