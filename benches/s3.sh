#!/usr/bin/env bash
# Dump to object storage against the same dump to a local file, same run: `kubectl dbbackup
# --compress none -f s3://BUCKET/KEY` (the local S3 server, tests/cluster/cluster.sh s3-up)
# and `-f FILE`, for a ~100 MiB and a ~1 GiB dump. Throughput ratio (S3 / file) and peak RSS
# from /usr/bin/time -v: the upload must stay streamed (RSS flat as the dump grows).
# Needs a cluster (KUBECONFIG, or the local one) and the S3 server's env file.
#   SIZES="100 1024"   MiB of rows (~1 KiB each)
#   BIN=target/debug   use an already-built binary instead of building a release one
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBECONFIG=${KUBECONFIG:-/var/tmp/kubectl-db-cluster/kubeconfig}
KUBECTL=${KUBECTL:-$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl}
IMAGE=${IMAGE:-localhost/kdb/postgres:15}
SIZES=${SIZES:-"100 1024"}
S3_ENV=${S3_ENV:-${KDB_CLUSTER_STATE:-/var/tmp/kubectl-db-cluster}/s3/env}
NS=kdb-bench-s3-$$
OUT=$(mktemp -d)
if [[ -z ${BIN:-} ]]; then
  BIN=${CARGO_TARGET_DIR:-target}/release
  cargo build --release --locked -q --bin kubectl-dbbackup --bin kubectl-dbdeploy
fi
[[ -s $S3_ENV ]] || { echo "no $S3_ENV: run tests/cluster/cluster.sh s3-up" >&2; exit 1; }
# shellcheck disable=SC1090
. "$S3_ENV"
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY \
  AWS_REGION=$S3_REGION AWS_ENDPOINT_URL=$S3_ENDPOINT
# s3_body METHOD PATH : a signed request's body (credentials through curl's stdin, not argv).
s3_body() {
  curl -sS -X "$1" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K - "$S3_ENDPOINT$2" \
    <<<"user = \"$S3_ACCESS_KEY_ID:$S3_SECRET_ACCESS_KEY\""
}
# s3 METHOD PATH : the same request's HTTP status.
s3() {
  curl -sS -o /dev/null -w '%{http_code}' -X "$1" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K - "$S3_ENDPOINT$2" \
    <<<"user = \"$S3_ACCESS_KEY_ID:$S3_SECRET_ACCESS_KEY\""
}
BUCKET=kdb-bench-$$
[[ $(s3 PUT "/$BUCKET") == 200 ]] || { echo "cannot create bucket $BUCKET" >&2; exit 1; }
cleanup() {
  rm -rf "$OUT"
  local k
  for k in $(s3_body GET "/$BUCKET?list-type=2" | grep -o '<Key>[^<]*' | cut -c6-); do
    s3 DELETE "/$BUCKET/$k" >/dev/null || true
  done
  s3 DELETE "/$BUCKET" >/dev/null || true
  timeout 60 "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}
timeout 30 "$KUBECTL" create namespace "$NS" >/dev/null
trap cleanup EXIT
until timeout 10 "$KUBECTL" -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.2; done
"$BIN"/kubectl-dbdeploy -n "$NS" postgres --image "$IMAGE" --cpu 50m --memory 128Mi \
  --memory-limit 1Gi --storage-size 6Gi -q >/dev/null

psql() {
  timeout 1800 "$KUBECTL" -n "$NS" exec -i postgres-0 -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d appdb'
}
# run NAME CMD... : wall seconds and peak RSS (KiB) of CMD
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
printf '| %-9s | %-36s | %9s | %8s | %9s | %13s |\n' "dump" "destination" "bytes" "seconds" "MiB/s" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|%s|\n' "-----------" "--------------------------------------" "-----------" "----------" "-----------" "---------------"
for mib in $SIZES; do
  want=$((mib * 1024))
  echo "INSERT INTO big SELECT g, repeat(md5(g::text), 30) FROM generate_series($((rows + 1)), $want) g; CHECKPOINT;" | psql
  rows=$want
  rm -f "$OUT"/*.sql "$OUT"/*.sql.sha256
  read -r f_wall f_rss < <(run file "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress none \
    -f "$OUT/dump.sql" -o json)
  f_bytes=$(stat -c %s "$OUT/dump.sql")
  rm -f "$OUT/dump.sql" "$OUT/dump.sql.sha256"
  read -r s_wall s_rss < <(run s3 "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress none \
    -f "s3://$BUCKET/dump-$mib.sql" -o json)
  s_bytes=$(grep -o '"bytes_written": [0-9]*' "$OUT/s3.out" | grep -o '[0-9]*$')
  for row in "-f FILE (local disk)|$f_bytes|$f_wall|$f_rss" \
    "-f s3://BUCKET/KEY (local versitygw)|$s_bytes|$s_wall|$s_rss"; do
    IFS='|' read -r label bytes wall rss <<<"$row"
    awk -v d="~${mib} MiB" -v l="$label" -v b="$bytes" -v w="$wall" -v r="$rss" 'BEGIN{
      printf "| %-9s | %-36s | %8.0fM | %8.2f | %9.1f | %13.1f |\n", d, l, b/1048576, w, b/1048576/w, r/1024}'
  done
  awk -v f="$f_wall" -v s="$s_wall" 'BEGIN{printf "| %-9s | %-36s | %9s | %8s | %8.2fx | %13s |\n", "", "s3 throughput / file", "", "", f/s, ""}'
done
