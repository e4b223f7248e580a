#!/usr/bin/env bash
# Dump throughput and client memory: `kubectl dbbackup dump --compress none` against
# `kubectl exec POD -- pg_dumpall > file` on the same database in the same run, for a
# ~100 MiB and a ~1 GiB dump. Peak RSS from /usr/bin/time -v. Targets (issue #5):
# throughput >= 0.95x kubectl's, peak RSS < 32 MiB and flat as the dump grows.
# Needs a cluster: KUBECONFIG, or the local one (tests/cluster/cluster.sh up).
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBECONFIG=${KUBECONFIG:-/var/tmp/kubectl-db-cluster/kubeconfig}
KUBECTL=${KUBECTL:-$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl}
IMAGE=${IMAGE:-localhost/kdb/postgres:15}
SIZES=${SIZES:-"100 1024"} # MiB of rows (~1 KiB each)
NS=kdb-bench-dump-$$
OUT=$(mktemp -d)
BIN=${CARGO_TARGET_DIR:-target}/release
cargo build --release --locked -q --bin kubectl-dbbackup --bin kubectl-dbdeploy
timeout 30 "$KUBECTL" create namespace "$NS" >/dev/null
trap 'rm -rf "$OUT"; timeout 60 "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
until timeout 10 "$KUBECTL" -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.2; done
"$BIN"/kubectl-dbdeploy -n "$NS" postgres --image "$IMAGE" --cpu 50m --memory 128Mi \
  --memory-limit 1Gi --storage-size 6Gi -q >/dev/null

psql() {
  timeout 1800 "$KUBECTL" -n "$NS" exec -i postgres-0 -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d appdb'
}
# run NAME CMD... : wall seconds and peak RSS (KiB) of CMD, stdout to $OUT/NAME.sql
run() {
  local name=$1
  shift
  /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$OUT/$name.time")
  rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$OUT/$name.time")
  echo "$wall $rss"
}

echo "CREATE TABLE big (id bigint, s text);" | psql
rows=0
printf '| %-9s | %-34s | %9s | %8s | %9s | %13s |\n' "dump" "command" "bytes" "seconds" "MiB/s" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|%s|\n' "-----------" "------------------------------------" "-----------" "----------" "-----------" "---------------"
for mib in $SIZES; do
  want=$((mib * 1024))
  echo "INSERT INTO big SELECT g, repeat(md5(g::text), 30) FROM generate_series($((rows + 1)), $want) g; CHECKPOINT;" | psql
  rows=$want
  rm -f "$OUT"/*.sql "$OUT"/*.sql.sha256
  read -r k_wall k_rss < <(run kubectl timeout 3600 "$KUBECTL" -n "$NS" exec postgres-0 -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" exec pg_dumpall -U "$POSTGRES_USER"')
  k_bytes=$(stat -c %s "$OUT/kubectl.out")
  read -r d_wall d_rss < <(run dbbackup "$BIN"/kubectl-dbbackup -n "$NS" -q postgres \
    --compress none -f "$OUT/dbbackup.sql")
  d_bytes=$(stat -c %s "$OUT/dbbackup.sql")
  for row in "kubectl exec -- pg_dumpall > file|$k_bytes|$k_wall|$k_rss" \
    "kubectl dbbackup --compress none|$d_bytes|$d_wall|$d_rss"; do
    IFS='|' read -r label bytes wall rss <<<"$row"
    awk -v d="~${mib} MiB" -v l="$label" -v b="$bytes" -v w="$wall" -v r="$rss" 'BEGIN{
      printf "| %-9s | %-34s | %8.0fM | %8.2f | %9.1f | %13.1f |\n", d, l, b/1048576, w, b/1048576/w, r/1024}'
  done
  awk -v k="$k_wall" -v d="$d_wall" 'BEGIN{printf "| %-9s | %-34s | %9s | %8s | %8.2fx | %13s |\n", "", "dbbackup throughput / kubectl", "", "", k/d, ""}'
done
