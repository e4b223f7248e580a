#!/usr/bin/env bash
# Start-up time of each plugin (`--version`, `--help`) against `kubectl version --client`,
# measured in the same run. Prints a table; asserts nothing (a benchmark, not a test).
# Target: 0.1x of kubectl or less.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
KUBECTL=${KUBECTL:-$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl}
[[ -x $KUBECTL ]] || KUBECTL=/usr/lib/google-cloud-sdk/bin/kubectl.1.32
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --locked -q

# mean wall time in ms of RUNS runs of a command
mean_ms() {
  local t0 t1
  "$@" >/dev/null 2>&1 || true # warm the page cache
  t0=$(date +%s%N)
  for ((i = 0; i < RUNS; i++)); do timeout 20 "$@" >/dev/null 2>&1 || true; done
  t1=$(date +%s%N)
  echo $(((t1 - t0) / RUNS / 1000))
}

base=$(mean_ms "$KUBECTL" version --client)
printf '%-38s %10s %8s\n' command "mean (us)" "x kubectl"
printf '%-38s %10s %8s\n' "kubectl version --client" "$base" "1.00"
for bin in dbdeploy dbcheck dbbackup dbpersist; do
  for arg in --version --help; do
    t=$(mean_ms "$BIN_DIR/kubectl-$bin" "$arg")
    printf '%-38s %10s %8s\n' "kubectl-$bin $arg" "$t" "$(awk "BEGIN{printf \"%.3f\", $t/$base}")"
  done
done
