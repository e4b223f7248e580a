# Shared by the bench scripts (sourced, not run): the cluster, a throwaway namespace with a
# PostgreSQL in it, the realistic rows of benches/dump.sh, and a timer that reports peak RSS.
# shellcheck shell=bash

export KUBECONFIG=${KUBECONFIG:-/var/tmp/kubectl-db-cluster/kubeconfig}
KUBECTL=${KUBECTL:-$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl}
IMAGE=${IMAGE:-localhost/kdb/postgres:15}
PROFILE=${PROFILE:-release}

# bench_bin : sets BIN to the build to measure (BIN=... to use one already built;
# SHIPPED=1: the static musl build the release ships, benches/shipped.sh).
bench_bin() {
  if [[ -n ${BIN:-} ]]; then return; fi
  if [[ ${SHIPPED:-0} == 1 ]]; then BIN=$(bash benches/shipped.sh); return; fi
  local flag=()
  [[ $PROFILE == release ]] && flag=(--release)
  nice cargo build "${flag[@]}" --locked -q --bin kubectl-dbbackup --bin kubectl-dbdeploy --bin kubectl-dbcheck
  BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
}

# k ARGS... : kubectl in the bench namespace, bounded (K_TIMEOUT seconds, default 60).
k() { timeout "${K_TIMEOUT:-60}" "$KUBECTL" -n "$NS" "$@"; }

# bench_namespace NAME : creates namespace NAME (sets NS) once its default ServiceAccount exists.
bench_namespace() {
  NS=$1
  timeout 30 "$KUBECTL" create namespace "$NS" >/dev/null
  until timeout 10 "$KUBECTL" -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.2; done
}

delete_namespace() {
  [[ -n ${NS:-} ]] && timeout 60 "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}

# deploy_postgres NAME STORAGE : a PostgreSQL StatefulSet NAME (pod NAME-0), Ready.
deploy_postgres() {
  timeout 900 "$BIN"/kubectl-dbdeploy -n "$NS" postgres --name "$1" --image "$IMAGE" --cpu 50m \
    --memory 128Mi --memory-limit 1Gi --storage-size "$2" -q >/dev/null
}

# psql_in POD DB : runs the SQL on stdin, stopping at the first error.
psql_in() {
  K_TIMEOUT=3600 k exec -i "$1" -- sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$1"' sh "$2"
}

# orders_schema POD : the table of benches/dump.sh and the word generator for its notes.
orders_schema() {
  psql_in "$1" appdb <<'SQL'
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
}

# fill_orders POD FROM TO [DB] : rows FROM..TO (~1 KiB each: words drawn at random, an
# e-mail, an md5 and numbers; gzip -1 makes about 3.7:1 of their dump, like real tables)
# into DB's orders (default appdb).
fill_orders() {
  psql_in "$1" "${4:-appdb}" <<SQL
INSERT INTO orders SELECT g, timestamptz '2024-01-01' + g * interval '17 seconds',
  (ARRAY['new','paid','shipped','delivered','returned'])[1 + g % 5], 'user' || (g::bigint * 7919 % 100003) || '@example.com',
  round((random() * 100000)::numeric, 2), md5(g::text), words(120, g)
  FROM generate_series($2::bigint, $3) g;
CHECKPOINT;
SQL
}

# run OUTDIR NAME CMD... : prints "wall-seconds peak-RSS-KiB" of CMD; its stdout goes to
# OUTDIR/NAME.out, its stderr to OUTDIR/NAME.err. Fails when CMD fails.
run() {
  local out=$1 name=$2
  shift 2
  if ! /usr/bin/time -v -o "$out/$name.time" "$@" >"$out/$name.out" 2>"$out/$name.err"; then
    echo "$name failed: $*" >&2
    tail -n 5 "$out/$name.err" >&2
    return 1
  fi
  awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; w=s}
    /Maximum resident set size/{r=$2} END{print w, r}' "$out/$name.time"
}
