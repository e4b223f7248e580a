#!/usr/bin/env bash
# The test command (`make test`): lints, pure tests, and the integration tests against a
# real cluster. Starts the local cluster (tests/cluster/cluster.sh) unless
# KDB_TEST_KUBECONFIG already names one, and stops it again if it started it.
set -euo pipefail
cd "$(dirname "$0")/.."

phase() {
  local name=$1 t0=$SECONDS; shift
  echo "== $name" >&2
  "$@"
  echo "== $name: $((SECONDS - t0))s" >&2
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
phase "cargo test" cargo test --locked -- --test-threads=2
