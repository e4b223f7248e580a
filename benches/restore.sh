#!/usr/bin/env bash
# Restore (and the dumps it restores) side by side with kubectl in the same run, on the same
# files: `kubectl exec -i POD -- psql < file` (and `gzip -dc file.gz | kubectl exec -i ...`,
# the by-hand restore of docs/dbbackup.md) against `kubectl dbbackup restore -f file` (the
# stream compressed with zstd for the pod's zstd, and with `--compress-in-pod=false`), for a
# ~100 MiB and a ~1 GiB dump. Wall time and peak RSS from /usr/bin/time -v. Before each
# restore the database is dropped, so every restore starts from the same state, and after
# it the row count is checked.
#
# The rows are those of benches/dump.sh (~1 KiB orders, words drawn at random, an e-mail, an
# md5 and numbers: gzip -1 makes about 3.7:1 of the dump).
#
#   SIZES="100 1024" PROFILE=release benches/restore.sh
#
# PROFILE=debug measures the test build; BIN=DIR a build already made. Needs a cluster:
# KUBECONFIG, or the local one (tests/cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
SIZES=${SIZES:-"100 1024"} # MiB of rows (~1 KiB each)
OUT=$(mktemp -d)
bench_bin
trap 'rm -rf "$OUT"; delete_namespace' EXIT
bench_namespace kdb-bench-restore-$$
storage=$((${SIZES##* } * 5 / 1024 + 2))Gi
deploy_postgres postgres "$storage"
POD=postgres-0
orders_schema $POD

# measure SIZE LABEL BYTES-FILE CMD... : one table row. SQL MiB/s is the size of BYTES-FILE
# (the plain dump) over the seconds; x kubectl compares with the first row since ref_wall
# was emptied.
measure() {
  local size=$1 label=$2 bytes_file=$3 wall rss
  shift 3
  read -r wall rss < <(run "$OUT" m "$@")
  ref_wall=${ref_wall:-$wall}
  awk -v d="$size" -v l="$label" -v b="$(stat -c %s "$bytes_file")" -v w="$wall" -v k="$ref_wall" -v m="$rss" 'BEGIN{
    printf "| %-9s | %-52s | %8.2f | %9.1f | %8.2fx | %12.1f |\n", d, l, w, b/1048576/w, k/w, m/1024}'
}
reset() { echo "DROP DATABASE IF EXISTS appdb WITH (FORCE);" | psql_in $POD postgres; }
check_rows() {
  local n
  n=$(echo "SELECT count(*) FROM orders" | K_TIMEOUT=600 k exec -i $POD -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" psql -X -qtA -U "$POSTGRES_USER" -d appdb')
  [[ $n == "$1" ]] || { echo "after $2: $n rows, expected $1" >&2; exit 1; }
}
exec_psql='PGPASSWORD="$POSTGRES_PASSWORD" exec psql -X -q -U "$POSTGRES_USER" -d postgres'

rows=0
printf '| %-9s | %-52s | %8s | %9s | %9s | %12s |\n' "dump" "command" "seconds" "SQL MiB/s" "x kubectl" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|%s|\n' "-----------" "------------------------------------------------------" "----------" "-----------" "-----------" "--------------"
for mib in $SIZES; do
  want=$((mib * 1024))
  fill_orders $POD $((rows + 1)) $want
  rows=$want
  rm -f "$OUT"/*
  d="~$mib MiB"

  # The dumps the restores read (their cost is in the same run, so shown too).
  ref_wall=
  measure "$d" "dump: kubectl exec -- pg_dumpall > file" "$OUT/m.out" \
    timeout 3600 "$KUBECTL" -n "$NS" exec $POD -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" exec pg_dumpall -U "$POSTGRES_USER"'
  mv "$OUT/m.out" "$OUT/k.sql"
  measure "$d" "dump: dbbackup (default, zstd in the pod)" "$OUT/k.sql" \
    timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" -q postgres -f "$OUT/d.sql.gz"
  measure "$d" "dump: dbbackup --compress none" "$OUT/k.sql" \
    timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress none -f "$OUT/d.sql"

  ref_wall=
  reset
  measure "$d" "restore: kubectl exec -i -- psql < file.sql" "$OUT/k.sql" \
    sh -c 'exec timeout 3600 "$1" -n "$2" exec -i "$3" -- sh -c "$4" < "$5"' sh \
    "$KUBECTL" "$NS" $POD "$exec_psql" "$OUT/d.sql"
  check_rows $rows "kubectl exec -i psql"
  reset
  measure "$d" "restore: dbbackup restore -f file.sql" "$OUT/k.sql" \
    timeout 3600 "$BIN"/kubectl-dbbackup restore postgres -n "$NS" -q -f "$OUT/d.sql"
  check_rows $rows "dbbackup restore -f file.sql"
  reset
  measure "$d" "restore: dbbackup restore --compress-in-pod=false" "$OUT/k.sql" \
    timeout 3600 "$BIN"/kubectl-dbbackup restore postgres -n "$NS" -q -f "$OUT/d.sql" --compress-in-pod=false
  check_rows $rows "dbbackup restore --compress-in-pod=false -f file.sql"
  ref_wall=
  reset
  measure "$d" "restore: gzip -dc file.sql.gz | kubectl exec -i psql" "$OUT/k.sql" \
    sh -c 'gzip -dc "$5" | timeout 3600 "$1" -n "$2" exec -i "$3" -- sh -c "$4"' sh \
    "$KUBECTL" "$NS" $POD "$exec_psql" "$OUT/d.sql.gz"
  check_rows $rows "gzip -dc | kubectl exec -i psql"
  reset
  measure "$d" "restore: dbbackup restore -f file.sql.gz" "$OUT/k.sql" \
    timeout 3600 "$BIN"/kubectl-dbbackup restore postgres -n "$NS" -q -f "$OUT/d.sql.gz"
  check_rows $rows "dbbackup restore -f file.sql.gz"
  reset
  measure "$d" "restore: dbbackup restore --compress-in-pod=false .gz" "$OUT/k.sql" \
    timeout 3600 "$BIN"/kubectl-dbbackup restore postgres -n "$NS" -q -f "$OUT/d.sql.gz" --compress-in-pod=false
  check_rows $rows "dbbackup restore --compress-in-pod=false -f file.sql.gz"
done
echo
echo "$PROFILE build ($BIN); SQL MiB/s = pg_dumpall's bytes / seconds; x kubectl against the kubectl row above it."
