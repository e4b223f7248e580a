#!/usr/bin/env bash
# The test command (`make test`): lints, pure tests, and the integration tests against a
# real cluster. Starts the local cluster (tests/cluster/cluster.sh) unless
# KDB_TEST_KUBECONFIG already names one, and stops it again if it started it.
set -euo pipefail
cd "$(dirname "$0")/.."

phase() {
  local name=$1 t0=$SECONDS rc=0; shift
  echo "== $name" >&2
  # The status is passed on explicitly: under `phase ... || handler`, set -e is off.
  "$@" || rc=$?
  echo "== $name: $((SECONDS - t0))s" >&2
  return "$rc"
}

bash tests/deps.sh

started_cluster=
if [[ -z "${KDB_TEST_KUBECONFIG:-}" ]]; then
  if ! bash tests/cluster/cluster.sh status >/dev/null 2>&1; then
    started_cluster=1
    # A cluster whose processes were killed (a stopped session) leaves pods, mounts and
    # stale state behind: clear them so the tests start from an empty cluster.
    bash tests/cluster/cluster.sh down >/dev/null 2>&1 || true
  fi
  cleanup() {
    if [[ -n $started_cluster && -z "${KDB_KEEP_CLUSTER:-}" ]]; then
      bash tests/cluster/cluster.sh down || true
    fi
  }
  trap cleanup EXIT
  phase "cluster up" bash tests/cluster/cluster.sh up
  export KDB_TEST_KUBECONFIG=/var/tmp/kubectl-db-cluster/kubeconfig
  [[ -n "${KDB_CLUSTER_STATE:-}" ]] && export KDB_TEST_KUBECONFIG=$KDB_CLUSTER_STATE/kubeconfig
fi
export KDB_REQUIRE_CLUSTER=1
# The control-plane fault tests (tests/safety_faults.rs) restart this cluster's API server.
export KDB_TEST_FAULTS=${KDB_TEST_FAULTS:-1}

phase "fmt" cargo fmt --all -- --check
phase "clippy" cargo clippy --all-targets --locked -- -D warnings
# Integration tests start database pods on a 2-core node: two at a time is plenty.
# A failure that the cluster caused (DNS, the kubelet) is read from its daemons' logs, which
# `down` removes: their ends go to the CI log first.
daemon_logs() {
  local logs=${KDB_CLUSTER_STATE:-/var/tmp/kubectl-db-cluster}/logs f
  for f in "$logs"/coredns.log "$logs"/kubelet.log "$logs"/containerd.log; do
    [[ -f $f ]] || continue
    echo "== last lines of $f" >&2
    tail -n 15 "$f" | cut -c1-400 >&2
  done
}
phase "cargo test" cargo test --locked -- --test-threads=2 || { daemon_logs; exit 1; }
