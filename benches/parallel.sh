#!/usr/bin/env bash
# `dbbackup dump --parallel 4` against the serial default on four equal databases, side by
# side with `kubectl exec POD -- pg_dumpall > file` in the same run: wall time, peak RSS and
# the speed-up of each over kubectl and of --parallel over the serial dump. Each database
# holds the realistic rows of benches/lib.sh (orders, ~1 KiB each).
#
#   MIB=100 RUNS=3 PROFILE=release benches/parallel.sh
#
# MIB is the size of each database's rows (four of them). BIN=... measures a build already
# made. Needs a cluster: KUBECONFIG, or the local one (tests/cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
MIB=${MIB:-100}
RUNS=${RUNS:-3}
OUT=$(mktemp -d)
bench_bin
bench_namespace "kdb-bench-parallel-$$"
trap 'rm -rf "$OUT"; delete_namespace' EXIT
deploy_postgres postgres "$((MIB * 4 * 3 / 1024 + 2))Gi"
rows=$((MIB * 1024))
orders_schema postgres-0
fill_orders postgres-0 1 "$rows"
for db in db2 db3 db4; do
  # The same rows in each: CREATE DATABASE ... TEMPLATE copies appdb.
  psql_in postgres-0 postgres <<<"CREATE DATABASE $db TEMPLATE appdb;"
done

printf '%-34s %8s %10s %9s\n' command seconds "RSS MiB" "vs kubectl"
declare -A best
measure() {
  local name=$1 i line secs
  shift
  best[$name]=
  for ((i = 1; i <= RUNS; i++)); do
    rm -f "$OUT"/dump*
    line=$(run "$OUT" "$name" "$@")
    secs=${line% *}
    if [[ -z ${best[$name]} ]] || awk -v a="$secs" -v b="${best[$name]% *}" 'BEGIN{exit !(a < b)}'; then
      best[$name]=$line
    fi
  done
}
measure kubectl sh -c "timeout 3600 '$KUBECTL' -n '$NS' exec postgres-0 -- sh -c 'PGPASSWORD=\"\$POSTGRES_PASSWORD\" pg_dumpall -U \"\$POSTGRES_USER\"' > '$OUT/dump-kubectl.sql'"
measure serial timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" dump postgres-0 -f "$OUT/dump-serial.sql.gz" -q
measure parallel4 timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" dump postgres-0 --parallel 4 -f "$OUT/dump-par.tar" -q
base=${best[kubectl]% *}
serial=${best[serial]% *}
for name in kubectl serial parallel4; do
  read -r secs rss <<<"${best[$name]}"
  printf '%-34s %8.2f %10.1f %8.2fx\n' "$name" "$secs" "$(awk -v r="$rss" 'BEGIN{print r/1024}')" \
    "$(awk -v a="$base" -v b="$secs" 'BEGIN{print a/b}')"
done
printf '%-34s %8s %10s %8.2fx\n' "--parallel 4 over serial" "" "" "$(awk -v a="$serial" -v b="${best[parallel4]% *}" 'BEGIN{print a/b}')"
