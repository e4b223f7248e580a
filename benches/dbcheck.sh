#!/usr/bin/env bash
# Benchmark (not a test): wall time of `kubectl dbcheck <pod>` on a healthy database against
# the guide's own diagnostic commands run one after another ("문제 해결 가이드" and "진단
# 명령어 모음" of seed/000_b6b8cbdecc1d4d07.txt, with `mysql` replaced by the database's
# name and passwords read from the pod's environment), in the same run. Prints a table and
# the ratio.
#
#   KUBECONFIG=/var/tmp/kubectl-db-cluster/kubeconfig benches/dbcheck.sh [ROUNDS]
#
# Deploys a MariaDB (the guide's commands are MySQL's) in a throwaway namespace, deleted at
# the end. Needs kubectl on PATH (or KUBECTL=...) for the guide's side.
#
# Then (SUMMARY=0 skips it) the namespace summary, `kubectl dbcheck` without a target, with
# one and with eight healthy PostgreSQL servers in a namespace of its own: API requests
# other than exec (the client's own request log, printed at -vv), execs and wall time, side
# by side; and `kubectl dbcheck -A` once, which counts whatever else the cluster runs.
# BIN=DIR uses binaries already built instead of building the release ones.
set -euo pipefail

ROUNDS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
KUBECTL=${KUBECTL:-$(command -v kubectl || echo "$HOME/.cache/kubectl-db/k8s-v1.34.4/bin/kubectl")}
IMAGE=${KDB_TEST_MARIADB_IMAGE:-localhost/kdb/mariadb:10.11}
NS=kdb-bench-check-$RANDOM
NAME=mysql
POD=$NAME-0

if [[ -z ${BIN:-} ]]; then
  nice cargo build --release --quiet --manifest-path "$HERE/Cargo.toml" --bin kubectl-dbcheck --bin kubectl-dbdeploy
  BIN=$HERE/target/release
fi
k() { timeout 60 "$KUBECTL" -n "$NS" "$@"; }

NS_ALL=
cleanup() {
  for ns in "$NS" $NS_ALL; do
    timeout 60 "$KUBECTL" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

echo "deploying $IMAGE as $NS/$NAME ..." >&2
timeout 60 "$KUBECTL" create namespace "$NS" >/dev/null
"$BIN/kubectl-dbdeploy" -n "$NS" mariadb --name "$NAME" --image "$IMAGE" \
  --cpu 50m --memory 128Mi --memory-limit 1Gi --storage-size 1Gi \
  --dry-run=client --show-password -o yaml | k apply -f - >/dev/null
# Not through k(): on a loaded node the first start can take longer than its 60 s.
timeout 320 "$KUBECTL" -n "$NS" rollout status statefulset/"$NAME" --timeout=300s >/dev/null
timeout 320 "$KUBECTL" -n "$NS" wait --for=condition=ready pod/"$POD" --timeout=300s >/dev/null

# The guide's commands, in its order. `-it` dropped (no terminal here); `logs -f` becomes a
# plain `logs` (following never ends); the throwaway netshoot pod is left out (it pulls an
# image from the internet). Failures (no previous container, no metrics API) still count:
# a person runs them and reads the error.
guide() {
  k get pvc -l app=$NAME
  k describe pvc data-$POD
  k get storageclass
  k get events --sort-by=.lastTimestamp | grep $NAME || true
  k describe pod $POD | grep -A 10 SecurityContext || true
  k exec $POD -- ls -la /var/lib/mysql
  k exec $POD -- id
  k logs $POD --previous || true
  k logs $POD --tail=100
  k exec $POD -- sh -c 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mysqladmin -uroot status'
  k get pod $POD -o yaml | grep -A 20 readinessProbe
  k exec $POD -- sh -c 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mysqladmin ping -uroot'
  k get statefulsets,services,pods,pvc -l app=$NAME
  k describe statefulset $NAME
  k describe pod $POD
  k describe pvc data-$POD
  k logs -l app=$NAME --tail=100
  k logs -l app=$NAME --previous || true
  k top pod $POD || true
  k exec $POD -- sh -c 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mysql -uroot -e "SELECT VERSION(); SHOW DATABASES;"'
}

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

dbcheck_times=()
guide_times=()
for ((i = 1; i <= ROUNDS; i++)); do
  t0=$(now)
  timeout 120 "$BIN/kubectl-dbcheck" -n "$NS" "$POD" -o json >/tmp/kdb-bench-dbcheck.json || true
  t1=$(now)
  guide >/dev/null 2>&1
  t2=$(now)
  dbcheck_times+=("$(elapsed "$t0" "$t1")")
  guide_times+=("$(elapsed "$t1" "$t2")")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d=$(median "${dbcheck_times[@]}")
g=$(median "${guide_times[@]}")
checks=$(python3 -c 'import json;r=json.load(open("/tmp/kdb-bench-dbcheck.json"));print(len(r["checks"]), r["summary"]["verdict"])' 2>/dev/null || echo "? ?")

printf '\n%-46s %10s %s\n' "what ($ROUNDS rounds, median)" "seconds" "notes"
printf '%-46s %10.3f %s\n' "kubectl dbcheck $POD" "$d" "${checks% *} checks, verdict ${checks#* }, all concurrent"
printf '%-46s %10.3f %s\n' "guide's diagnostic commands, one by one" "$g" "20 kubectl invocations"
printf '%-46s %10.1fx\n' "ratio (guide / dbcheck)" "$(echo "$g / $d" | bc -l)"

[[ ${SUMMARY:-1} == 0 ]] && exit 0
k delete statefulset "$NAME" --wait=false >/dev/null 2>&1 || true # frees the node for eight

# summary ARGS... : one `kubectl dbcheck ARGS -vv -o json`: "seconds non-exec-requests execs
# databases verdicts", the requests from the client's log line ("N requests: 1 list pods, ...").
summary() {
  local t0 t1
  t0=$(now)
  timeout 300 "$BIN/kubectl-dbcheck" "$@" -vv -o json >/tmp/kdb-bench-summary.json 2>/tmp/kdb-bench-summary.err || true
  t1=$(now)
  python3 - "$(elapsed "$t0" "$t1")" <<'PY'
import json, re, sys
log = re.sub(r"\x1b\[[0-9;]*m", "", open("/tmp/kdb-bench-summary.err").read())
lines = [l for l in log.splitlines() if re.search(r"\d+ requests: ", l)]
counts = re.findall(r"(\d+) (\S+) (\S+)", lines[-1].split("requests: ", 1)[1]) if lines else []
execs = sum(int(n) for n, verb, _ in counts if verb == "exec")
other = sum(int(n) for n, verb, _ in counts if verb != "exec")
dbs = json.load(open("/tmp/kdb-bench-summary.json")).get("databases", [])
verdicts = {}
for d in dbs:
    verdicts[d.get("verdict")] = verdicts.get(d.get("verdict"), 0) + 1
problems = sorted({p.split(":", 1)[0] for d in dbs for p in d.get("problems", [])})
print(sys.argv[1], other, execs, len(dbs), ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
      + (f" ({', '.join(problems)})" if problems else ""))
PY
}
# measure_summary LABEL ARGS... : ROUNDS runs, the median wall time.
measure_summary() {
  local label=$1 times=() seconds other execs dbs verdicts
  shift
  for ((i = 1; i <= ROUNDS; i++)); do
    read -r seconds other execs dbs verdicts < <(summary "$@")
    times+=("$seconds")
  done
  printf '| %-22s | %9s | %28s | %5s | %7.2f | %s |\n' "$label" "$dbs" "$other" "$execs" "$(median "${times[@]}")" "$verdicts"
}

NS_ALL=kdb-bench-check-all-$RANDOM
timeout 60 "$KUBECTL" create namespace "$NS_ALL" >/dev/null
until timeout 10 "$KUBECTL" -n "$NS_ALL" get serviceaccount default >/dev/null 2>&1; do sleep 0.2; done
deploy() {
  timeout 600 "$BIN/kubectl-dbdeploy" -n "$NS_ALL" postgres --name "$1" --image "${KDB_TEST_POSTGRES_IMAGE:-localhost/kdb/postgres:15}" \
    --cpu 10m --memory 64Mi --memory-limit 512Mi --storage-size 1Gi -q >/dev/null
}
echo "deploying 1, then 7 more PostgreSQL in $NS_ALL ..." >&2
deploy db0
printf '\n| %-22s | %9s | %28s | %5s | %7s | %s |\n' "kubectl dbcheck ($ROUNDS rounds)" "databases" "API requests other than exec" "execs" "seconds" "verdicts"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------" "-----------" "------------------------------" "-------" "---------" "----------"
measure_summary "-n NS (1 database)" -n "$NS_ALL"
pids=()
for i in 1 2 3 4 5 6 7; do
  deploy "db$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
measure_summary "-n NS (8 databases)" -n "$NS_ALL"
measure_summary "-A (the whole cluster)" -A
echo "(-A sees every database of the cluster, this bench's and anyone else's)"
