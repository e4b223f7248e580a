#!/usr/bin/env bash
# `dbbackup dump` (serial default, and `--parallel N` over several databases) side by side
# with `kubectl exec POD -- pg_dumpall > file`, round after round in the same run (each
# round runs every command once, so a neighbour's load hits them alike): median and best
# wall time, peak RSS, the speed-up over kubectl and of --parallel over the serial dump.
# Also `dbbackup -f - > file` (the same dump with no manifest: a dump to stdout takes none)
# and where the serial dump's time goes (its -v timers: the manifest pass before the dump,
# the dump stream, the pass after; the passes run in the dump's exec, so the stream's time
# holds them, and the pass before is timed from the exec's start). Each database holds the realistic rows of benches/lib.sh
# (orders, ~1 KiB each), the same in each.
#
#   DBS=4 MIB=50 ROUNDS=3 PROFILE=release benches/parallel.sh
#   DBS=1 MIB=100 ROUNDS=3 benches/parallel.sh     # one database (no --parallel row)
#   DBS=4 MIB=25 BIG=4 PARALLEL=2 benches/parallel.sh  # the last database 4x the others
#
# MIB is the size of each database's rows. BIN=... measures a build already made. Needs a
# cluster: KUBECONFIG, or the local one (tests/cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
MIB=${MIB:-50}
DBS=${DBS:-4}
BIG=${BIG:-1}
ROUNDS=${ROUNDS:-${RUNS:-3}}
PARALLEL=${PARALLEL:-4}
OUT=$(mktemp -d)
bench_bin
bench_namespace "kdb-bench-parallel-$$"
trap 'rm -rf "$OUT"; delete_namespace' EXIT
deploy_postgres postgres "$((MIB * (DBS + BIG) * 3 / 1024 + 2))Gi"
orders_schema postgres-0
fill_orders postgres-0 1 "$((MIB * 1024))"
for ((d = 2; d <= DBS; d++)); do
  # The same rows in each: CREATE DATABASE ... TEMPLATE copies appdb.
  psql_in postgres-0 postgres <<<"CREATE DATABASE db$d TEMPLATE appdb;"
done
# BIG > 1: the last database (the last part of the archive) holds BIG times the rows.
((BIG > 1 && DBS > 1)) && fill_orders postgres-0 "$((MIB * 1024 + 1))" "$((MIB * 1024 * BIG))" "db$DBS"

names=(kubectl serial stdout)
((DBS > 1)) && names+=(parallel parzstd)
declare -A times rss split
for ((i = 1; i <= ROUNDS; i++)); do
  rm -f "$OUT"/dump*
  for name in "${names[@]}"; do
    case $name in
    kubectl) cmd=(sh -c "timeout 3600 '$KUBECTL' -n '$NS' exec postgres-0 -- sh -c 'PGPASSWORD=\"\$POSTGRES_PASSWORD\" pg_dumpall -U \"\$POSTGRES_USER\"' > '$OUT/dump-kubectl.sql'") ;;
    serial) cmd=(timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" dump postgres-0 -f "$OUT/dump-serial.sql.gz" -v) ;;
    stdout) cmd=(sh -c "timeout 3600 '$BIN'/kubectl-dbbackup -n '$NS' dump postgres-0 -f - -q > '$OUT/dump-stdout.sql.gz'") ;;
    parallel) cmd=(timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" dump postgres-0 --parallel "$PARALLEL" -f "$OUT/dump-par.tar" -q) ;;
    parzstd) cmd=(timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" dump postgres-0 --parallel "$PARALLEL" --compress zstd -f "$OUT/dump-parz.tar" -q) ;;
    esac
    read -r secs kib < <(run "$OUT" "$name" "${cmd[@]}")
    times[$name]+="$secs "
    rss[$name]+="$kib "
    if [[ $name == serial ]]; then
      # -v: "manifest pass before the dump seconds=S", "dump stream seconds=S", "... after".
      for step in before stream after; do
        pattern=$step
        [[ $step == stream ]] && pattern="dump stream"
        s=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/serial.err" | grep -E "$pattern" | grep -oE 'seconds=[0-9.eE+-]+' | head -n 1 | cut -d= -f2)
        split[$step]+="${s:-0} "
      done
    fi
  done
done
load=$(cut -d' ' -f1-3 /proc/loadavg)

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
best() { tr ' ' '\n' | grep . | sort -g | head -n 1; }
label() {
  case $1 in
  kubectl) echo 'kubectl exec -- pg_dumpall > file' ;;
  serial) echo 'dbbackup dump (serial default)' ;;
  stdout) echo 'dbbackup dump -f - > file (no manifest)' ;;
  parallel) echo "dbbackup dump --parallel $PARALLEL" ;;
  parzstd) echo "dbbackup dump --parallel $PARALLEL --compress zstd" ;;
  esac
}
echo "$DBS database(s) x $MIB MiB of rows (the last x$BIG), $ROUNDS rounds, load average at the end: $load"
printf '| %-40s | %8s | %8s | %12s | %9s |\n' command median best "peak RSS MiB" "x kubectl"
printf '|%s|%s|%s|%s|%s|\n' ------------------------------------------ ---------- ---------- -------------- -----------
base=$(median <<<"${times[kubectl]}")
for name in "${names[@]}"; do
  m=$(median <<<"${times[$name]}")
  printf '| %-40s | %8.2f | %8.2f | %12.1f | %8.2fx |\n' "$(label "$name")" "$m" "$(best <<<"${times[$name]}")" \
    "$(awk -v r="$(median <<<"${rss[$name]}")" 'BEGIN{print r/1024}')" "$(awk -v a="$base" -v b="$m" 'BEGIN{print a/b}')"
done
if ((DBS > 1)); then
  printf '%s over the serial dump: %.2fx (medians)\n' "--parallel $PARALLEL" \
    "$(awk -v a="$(median <<<"${times[serial]}")" -v b="$(median <<<"${times[parallel]}")" 'BEGIN{print a/b}')"
fi
printf 'serial dump, medians: manifest pass before %.2f s (from the exec'"'"'s start), dump stream with the passes %.2f s, pass after on an exec of its own %.2f s\n' \
  "$(median <<<"${split[before]}")" "$(median <<<"${split[stream]}")" "$(median <<<"${split[after]}")"
for name in "${names[@]}"; do echo "  $name: ${times[$name]}"; done
