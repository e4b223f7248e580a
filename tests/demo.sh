#!/usr/bin/env bash
# `make demo`: the guide end to end, through kubectl's plugin mechanism. Builds the plugins,
# starts the local cluster unless DEMO_KUBECONFIG names a cluster, then: deploy postgres,
# check it, back it up, prove its data survives the pod. Leaves the local cluster running
# (stop it with `make cluster-down`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; "$@"; }

cargo build --release --locked
export PATH="$PWD/target/release:$PATH"
if [[ -n "${DEMO_KUBECONFIG:-}" ]]; then
  export KUBECONFIG=$DEMO_KUBECONFIG
else
  bash tests/cluster/cluster.sh up
  eval "$(bash tests/cluster/cluster.sh env)"
fi
KUBECTL=$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl
[[ -x $KUBECTL ]] || KUBECTL=/usr/lib/google-cloud-sdk/bin/kubectl.1.32
kubectl() { timeout 600 "$KUBECTL" "$@"; }

NS=${DEMO_NAMESPACE:-kdb-demo}
kubectl get namespace "$NS" >/dev/null 2>&1 || kubectl create namespace "$NS"
until kubectl -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.5; done

step kubectl dbdeploy -n "$NS" postgres --cpu 100m --memory 256Mi --storage-size 1Gi
step kubectl dbdeploy -n "$NS" postgres --cpu 100m --memory 256Mi --storage-size 1Gi
step kubectl dbdeploy -n "$NS" list
step kubectl dbcheck -n "$NS" postgres-0
backup=$(mktemp -d)/postgres.sql.gz
step kubectl dbbackup -n "$NS" postgres-0 -f "$backup"
step kubectl dbbackup verify "$backup"
step kubectl dbpersist -n "$NS" postgres-0 --yes
echo "demo done: namespace $NS on $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')" >&2
