#!/usr/bin/env bash
# Dump throughput and client memory, side by side with kubectl in the same run, on the same
# database: `kubectl exec POD -- pg_dumpall > file` (and the same piped through the pod's
# gzip or zstd) against `kubectl dbbackup` compressing the stream in the pod (the default:
# the image's zstd, rewritten to the file's format here), without a manifest (`-f -`), and
# with the SQL on the stream (`--compress-in-pod=false`), for a ~100 MiB and a ~1 GiB dump.
# Then the client's compression levels on that dump. Peak RSS from /usr/bin/time -v.
#
# The rows are ~1 KiB orders with words drawn at random, an e-mail, an md5 and numbers:
# they compress about like real tables (3-4:1 with gzip -1), not like a repeated string.
# After loading them the table is vacuumed and analysed, as autovacuum soon does on its own:
# the database is then quiet, as a settled one between writes (an ANALYZE running during a
# dump ends a transaction and makes the manifest's pass after the dump count again).
#
#   SIZES="100 1024" PROFILE=release benches/dump.sh
#
# PROFILE=debug uses the test build (target/debug, dependencies at opt-level 1) instead of
# a release build; SHIPPED=1 the static musl build the release ships (benches/shipped.sh);
# BIN=DIR binaries already built. LEVELS=0 skips the compression levels (they build the library's tests). Needs a cluster: KUBECONFIG, or the local one (tests/cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBECONFIG=${KUBECONFIG:-/var/tmp/kubectl-db-cluster/kubeconfig}
KUBECTL=${KUBECTL:-$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl}
IMAGE=${IMAGE:-localhost/kdb/postgres:15}
SIZES=${SIZES:-"100 1024"} # MiB of rows (~1 KiB each)
PROFILE=${PROFILE:-release}
NS=kdb-bench-dump-$$
OUT=$(mktemp -d)
if [ -n "${BIN:-}" ]; then
  :
elif [ "${SHIPPED:-0}" = 1 ]; then
  BIN=$(bash benches/shipped.sh)
elif [ "$PROFILE" = release ]; then
  cargo build --release --locked -q --bin kubectl-dbbackup --bin kubectl-dbdeploy
  BIN=${CARGO_TARGET_DIR:-target}/release
else
  cargo build --locked -q --bin kubectl-dbbackup --bin kubectl-dbdeploy
  BIN=${CARGO_TARGET_DIR:-target}/debug
fi
timeout 30 "$KUBECTL" create namespace "$NS" >/dev/null
trap 'rm -rf "$OUT"; timeout 60 "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
until timeout 10 "$KUBECTL" -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.2; done
"$BIN"/kubectl-dbdeploy -n "$NS" postgres --image "$IMAGE" --cpu 50m --memory 128Mi \
  --memory-limit 1Gi --storage-size 6Gi -q >/dev/null

psql() {
  timeout 3600 "$KUBECTL" -n "$NS" exec -i postgres-0 -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d appdb'
}
# run NAME CMD... : wall seconds and peak RSS (KiB) of CMD, its stdout to $OUT/NAME.out
run() {
  local name=$1
  shift
  /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$OUT/$name.time")
  rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$OUT/$name.time")
  echo "$wall $rss"
}

cat <<'SQL' | psql
CREATE TABLE orders (id bigint PRIMARY KEY, created timestamptz, status text, email text,
  amount numeric(12,2), digest text, note text);
CREATE FUNCTION words(n int, seed bigint) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg((ARRAY['order','shipped','delayed','customer','payment','refund',
    'warehouse','Seoul','Busan','invoice','express','standard','returned','the','a','of',
    'package','address','confirmed','pending','cancelled','card','bank','transfer','note',
    'fragile','gift','priority','weekend','morning','evening','courier','received','damaged',
    'replacement','discount','coupon','loyalty','member','review','rating','excellent',
    'poor','average','quality','size','colour','blue','red','green'])[1 + floor(random() * 50)::int], ' ')
  FROM generate_series(1, n) WHERE seed >= 0 $$;
SQL

rows=0
sql_sample=""
printf '| %-9s | %-44s | %8s | %8s | %9s | %9s | %12s |\n' "dump" "command" "file MiB" "seconds" "SQL MiB/s" "x kubectl" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "-----------" "----------------------------------------------" "----------" "----------" "-----------" "-----------" "--------------"
for mib in $SIZES; do
  want=$((mib * 1024))
  echo "INSERT INTO orders SELECT g, timestamptz '2024-01-01' + g * interval '17 seconds',
    (ARRAY['new','paid','shipped','delivered','returned'])[1 + g % 5], 'user' || (g::bigint * 7919 % 100003) || '@example.com',
    round((random() * 100000)::numeric, 2), md5(g::text), words(120, g)
    FROM generate_series($((rows + 1))::bigint, $want) g; VACUUM ANALYZE orders; CHECKPOINT;" | psql
  rows=$want
  rm -f "$OUT"/*.out "$OUT"/*.sql* "$OUT"/*.time
  results=()
  measure() { # LABEL FILE CMD...
    local label=$1 file=$2
    shift 2
    read -r wall rss < <(run m "$@")
    results+=("$label|$(stat -c %s "$file")|$wall|$rss")
  }
  measure "kubectl exec -- pg_dumpall > file" "$OUT/m.out" \
    timeout 3600 "$KUBECTL" -n "$NS" exec postgres-0 -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" exec pg_dumpall -U "$POSTGRES_USER"'
  raw_bytes=$(stat -c %s "$OUT/m.out")
  measure "kubectl exec -- pg_dumpall, gzip -1 in pod" "$OUT/m.out" \
    timeout 3600 "$KUBECTL" -n "$NS" exec postgres-0 -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" pg_dumpall -U "$POSTGRES_USER" | gzip -1'
  measure "kubectl exec -- pg_dumpall, zstd -1 in pod" "$OUT/m.out" \
    timeout 3600 "$KUBECTL" -n "$NS" exec postgres-0 -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" pg_dumpall -U "$POSTGRES_USER" | zstd -1 -q -c'
  measure "dbbackup (default: .gz, zstd in the pod)" "$OUT/d1.sql.gz" \
    "$BIN"/kubectl-dbbackup -n "$NS" -q postgres -f "$OUT/d1.sql.gz"
  measure "dbbackup -f - > file (no manifest)" "$OUT/m.out" \
    "$BIN"/kubectl-dbbackup -n "$NS" -q postgres -f -
  measure "dbbackup --compress zstd (zstd in the pod)" "$OUT/d3.sql.zst" \
    "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress zstd -f "$OUT/d3.sql.zst"
  measure "dbbackup --compress none (zstd in the pod)" "$OUT/d4.sql" \
    "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress none -f "$OUT/d4.sql"
  measure "dbbackup --compress-in-pod=false (gzip here)" "$OUT/d2.sql.gz" \
    "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress-in-pod=false -f "$OUT/d2.sql.gz"
  kubectl_wall=""
  for row in "${results[@]}"; do
    IFS='|' read -r label bytes wall rss <<<"$row"
    kubectl_wall=${kubectl_wall:-$wall}
    awk -v d="~${mib} MiB" -v l="$label" -v b="$bytes" -v r="$raw_bytes" -v w="$wall" -v k="$kubectl_wall" -v m="$rss" 'BEGIN{
      printf "| %-9s | %-44s | %8.1f | %8.2f | %9.1f | %8.2fx | %12.1f |\n", d, l, b/1048576, w, r/1048576/w, k/w, m/1024}'
  done
  if [ -z "$sql_sample" ]; then
    sql_sample=$(mktemp)
    cp "$OUT/d4.sql" "$sql_sample"
  fi
done

# The client's compression levels on the first dump, through the crates the client uses.
if [ -n "$sql_sample" ] && [ "${LEVELS:-1}" != 0 ]; then
  echo
  echo "compression levels on the ~${SIZES%% *} MiB dump (one thread, $PROFILE build):"
  profile_flag=()
  [ "$PROFILE" = release ] && profile_flag=(--release)
  KDB_BENCH_SQL=$sql_sample cargo test --locked -q "${profile_flag[@]}" --lib compression_levels \
    -- --ignored --nocapture 2>/dev/null | grep '^|'
fi
rm -f ${sql_sample:+"$sql_sample"}
