#!/usr/bin/env bash
# Peak RSS and throughput of `kubectl dbbackup` dump and restore, two builds side by side
# (issue #18: at most 16 MiB from a 100 MiB to a 1 GiB dump, at no cost in throughput): the
# build to measure (BIN, default the release build) against a reference build (BASE, e.g.
# main's), interleaved in each of ROUNDS rounds on the same database, medians printed.
# Wall time and peak RSS from /usr/bin/time -v; the rows are those of benches/dump.sh.
#
#   BASE=/path/to/main/target/release ROUNDS=3 SIZES="100 1024" benches/rss.sh
#
# PLAIN=0 skips the uncompressed dump and its restore (half the time).
# Needs a cluster: KUBECONFIG, or the local one (tests/cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
SIZES=${SIZES:-"100 1024"} # MiB of rows (~1 KiB each)
ROUNDS=${ROUNDS:-3}
PLAIN=${PLAIN:-1}
labels=(dump "restore .sql.gz")
if ((PLAIN)); then labels+=("dump --compress none" "restore .sql"); fi
: "${BASE:?BASE=DIR: directory of the reference build}"
OUT=$(mktemp -d)
bench_bin
trap 'rm -rf "$OUT"; delete_namespace' EXIT
bench_namespace kdb-bench-rss-$$
deploy_postgres postgres $((${SIZES##* } * 5 / 1024 + 2))Gi
POD=postgres-0
orders_schema $POD
reset() { echo "DROP DATABASE IF EXISTS appdb WITH (FORCE);" | psql_in $POD postgres >/dev/null; }

# median of the numbers on stdin
median() { sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
# row SIZE LABEL BUILD : the medians of $OUT/BUILD-LABEL.{wall,rss}
row() {
  local key="$3-$2" sql_mib=$4
  local w r
  w=$(median <"$OUT/$key.wall")
  r=$(median <"$OUT/$key.rss")
  awk -v d="$1" -v l="$2" -v b="$3" -v w="$w" -v s="$sql_mib" -v m="$r" -v lo="$(sort -n "$OUT/$key.rss" | head -1)" \
    -v hi="$(sort -n "$OUT/$key.rss" | tail -1)" 'BEGIN{
    printf "| %-9s | %-24s | %-5s | %8.2f | %9.1f | %12.1f | %9.1f–%.1f |\n", d, l, b, w, s/w, m/1024, lo/1024, hi/1024}'
}
# one BUILD LABEL CMD... : one measurement, appended to $OUT/BUILD-LABEL.{wall,rss}
one() {
  local build=$1 label=$2 wall rss
  shift 2
  read -r wall rss < <(run "$OUT" m "$@")
  echo "$wall" >>"$OUT/$build-$label.wall"
  echo "$rss" >>"$OUT/$build-$label.rss"
}

rows=0
printf '| %-9s | %-24s | %-5s | %8s | %9s | %12s | %11s |\n' dump command build seconds "SQL MiB/s" "peak RSS MiB" "RSS range"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ----------- -------------------------- ------- ---------- ----------- -------------- -------------
for mib in $SIZES; do
  want=$((mib * 1024))
  fill_orders $POD $((rows + 1)) $want >/dev/null
  rows=$want
  rm -f "$OUT"/*
  for ((i = 1; i <= ROUNDS; i++)); do
    for build in base new; do
      dir=$BASE
      [[ $build == new ]] && dir=$BIN
      one $build dump timeout 3600 "$dir"/kubectl-dbbackup -n "$NS" -q $POD -f "$OUT/$build.sql.gz" --force
      if ((PLAIN)); then
        one $build "dump --compress none" timeout 3600 "$dir"/kubectl-dbbackup -n "$NS" -q $POD \
          --compress none -f "$OUT/$build.sql" --force
      fi
    done
    for build in base new; do
      dir=$BASE
      [[ $build == new ]] && dir=$BIN
      reset
      one $build "restore .sql.gz" timeout 3600 "$dir"/kubectl-dbbackup restore $POD -n "$NS" -q -f "$OUT/new.sql.gz"
      if ((PLAIN)); then
        reset
        one $build "restore .sql" timeout 3600 "$dir"/kubectl-dbbackup restore $POD -n "$NS" -q -f "$OUT/new.sql"
      fi
    done
  done
  sql=$(gzip -dc "$OUT/new.sql.gz" | wc -c | awk '{print $1 / 1048576}') # MiB of SQL
  for label in "${labels[@]}"; do
    for build in base new; do row "~$mib MiB" "$label" $build "$sql"; done
  done
done
echo
echo "$ROUNDS rounds, medians; base=$BASE new=$BIN; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
