#!/usr/bin/env bash
# Dump over a limited link, side by side with kubectl in the same run: the client runs in a
# network namespace whose only route to the API server is a veth pair shaped to RATE
# (default 100mbit) in both directions with `tc qdisc ... tbf`. Compares `kubectl exec POD --
# pg_dumpall > file` (and the same through the pod's gzip or zstd) with `kubectl dbbackup`
# (default: compressed in the pod) and `--compress none`, on a ~SIZE MiB dump (default 100);
# then the default dump's restore: `gzip -dc | kubectl exec -i psql` against `kubectl
# dbbackup restore` (the stream compressed for the pod's zstd, and the SQL as it is).
#
# Everything stays on this machine: the veth pair gets private test addresses
# (ADDR_PREFIX.1 and .2/30, default 10.254.253.x, refused when already in use), and since the
# API server listens on 127.0.0.1 only, a small TCP forwarder (python3, started here) listens
# on the veth's root-side address and connects to it. In the namespace the name `kubernetes`
# (one of the API server certificate's names) resolves to that address (/etc/netns/NAME/hosts,
# which `ip netns exec` mounts over /etc/hosts), so TLS verifies as usual. The namespace, the
# veth pair, the forwarder and the hosts file are removed on exit.
#
#   SIZE=100 RATE=100mbit PROFILE=release benches/link.sh
#
# Needs root (ip netns, tc), python3 and a cluster (KUBECONFIG, or the local one).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
SIZE=${SIZE:-100}
RATE=${RATE:-100mbit}
ADDR_PREFIX=${ADDR_PREFIX:-10.254.253}
NETNS=kdb-bench-link-$$
VETH=kdbl$$ # kdblPID (root side) and kdblPIDc (client side): at most 15 characters
HOST_ADDR=$ADDR_PREFIX.1
CLIENT_ADDR=$ADDR_PREFIX.2
OUT=$(mktemp -d)
FORWARDER_PID=

if ip -o addr show | grep -q " $ADDR_PREFIX\."; then
  echo "$ADDR_PREFIX.0/30 is already in use here: set ADDR_PREFIX" >&2
  exit 1
fi
server=$(timeout 20 "$KUBECTL" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
api_host=$(sed -E 's|^https://([^:/]+):?([0-9]*).*|\1|' <<<"$server")
api_port=$(sed -E 's|^https://([^:/]+):?([0-9]*).*|\2|' <<<"$server")
api_port=${api_port:-443}
bench_bin

cleanup() {
  set +e
  [[ -n $FORWARDER_PID ]] && kill "$FORWARDER_PID" 2>/dev/null
  ip link del "$VETH" 2>/dev/null
  ip netns del "$NETNS" 2>/dev/null
  rm -rf "/etc/netns/$NETNS" "$OUT"
  delete_namespace
}
trap cleanup EXIT

# The link. Each side's egress is shaped: the root side's carries the dump to the client.
ip netns add "$NETNS"
ip link add "$VETH" type veth peer name "${VETH}c"
ip link set "${VETH}c" netns "$NETNS"
ip addr add "$HOST_ADDR/30" dev "$VETH"
ip link set "$VETH" up
ip netns exec "$NETNS" ip addr add "$CLIENT_ADDR/30" dev "${VETH}c"
ip netns exec "$NETNS" ip link set "${VETH}c" up
ip netns exec "$NETNS" ip link set lo up
tc qdisc add dev "$VETH" root tbf rate "$RATE" burst 64kb latency 50ms
ip netns exec "$NETNS" tc qdisc add dev "${VETH}c" root tbf rate "$RATE" burst 64kb latency 50ms
mkdir -p "/etc/netns/$NETNS"
printf '127.0.0.1 localhost\n%s kubernetes\n' "$HOST_ADDR" >"/etc/netns/$NETNS/hosts"

# The forwarder: HOST_ADDR:api_port -> api_host:api_port, both directions, half-closes kept.
python3 -u - "$HOST_ADDR" "$api_port" "$api_host" "$api_port" >"$OUT/forwarder.log" 2>&1 <<'PY' &
import asyncio, sys

# No backpressure towards the API server: what it sent is read at once and held here, so
# nothing sits unread in a socket when it closes the connection (a version that waited for
# the shaped side lost the last MB of long streams: docs/dbbackup.md, "Over a limited link").
async def pipe(reader, writer):
    try:
        while data := await reader.read(262144):
            writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass

async def handle(client_r, client_w):
    try:
        up_r, up_w = await asyncio.open_connection(sys.argv[3], int(sys.argv[4]))
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    up_w.close()
    client_w.close()

async def main():
    server = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    print("listening", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY
FORWARDER_PID=$!
for _ in $(seq 50); do grep -q listening "$OUT/forwarder.log" && break; sleep 0.1; done
grep -q listening "$OUT/forwarder.log" || { cat "$OUT/forwarder.log" >&2; exit 1; }

# The client's kubeconfig: the same credentials, the server by the certificate's name.
timeout 20 "$KUBECTL" config view --minify --flatten >"$OUT/kubeconfig"
sed -i -E "s|server: .*|server: https://kubernetes:$api_port|" "$OUT/kubeconfig"
chmod 600 "$OUT/kubeconfig"
# CMD in the namespace, with that kubeconfig: "${LINKED[@]}" CMD...
LINKED=(ip netns exec "$NETNS" env KUBECONFIG="$OUT/kubeconfig")
"${LINKED[@]}" timeout 20 "$KUBECTL" version -o json >/dev/null ||
  { echo "the API server is not reachable over the link" >&2; exit 1; }

bench_namespace kdb-bench-link-$$
deploy_postgres postgres 2Gi
POD=postgres-0
orders_schema $POD
fill_orders $POD 1 $((SIZE * 1024))

# The link's own rate as kubectl sees it: 32 MiB of random bytes (incompressible) out of
# the pod.
read -r wall _ < <(run "$OUT" probe "${LINKED[@]}" timeout 600 "$KUBECTL" -n "$NS" exec $POD -- \
  head -c 33554432 /dev/urandom)
probe=$(awk -v w="$wall" -v b="$(stat -c %s "$OUT/probe.out")" 'BEGIN{printf "%.1f MiB/s (%.0f Mbit/s)", b/1048576/w, b*8/1e6/w}')

# row LABEL FILE CMD... : one table row; FILE is what CMD writes (its stdout when FILE is
# missing). The first row is kubectl's plain dump: its size is the SQL's, its time the
# reference.
SQL=
ref_wall=
row() {
  local label=$1 file=$2 wall rss
  shift 2
  if ! run "$OUT" m "${LINKED[@]}" "$@" >"$OUT/row"; then
    # A failed dump is a result too: its row says so, and the others still run.
    printf '| %-9s | %-44s | failed: %s |\n' "~$SIZE MiB" "$label" "$(grep -m1 -i error "$OUT/m.err" || tail -n1 "$OUT/m.err")"
    return 0
  fi
  read -r wall rss <"$OUT/row"
  [[ -s $file ]] || file=$OUT/m.out
  if [[ -z $SQL ]]; then
    SQL=$OUT/k.sql
    cp "$file" "$SQL"
    ref_wall=$wall
  fi
  # NEW_REF=1: this row is the reference of the rows after it.
  [[ -n ${NEW_REF:-} ]] && ref_wall=$wall
  awk -v d="~$SIZE MiB" -v l="$label" -v b="$(stat -c %s "$SQL")" -v f="$(stat -c %s "$file")" \
    -v w="$wall" -v k="$ref_wall" -v m="$rss" 'BEGIN{
    printf "| %-9s | %-44s | %8.1f | %8.2f | %9.1f | %8.2fx | %12.1f |\n", d, l, f/1048576, w, b/1048576/w, k/w, m/1024}'
}
printf '| %-9s | %-44s | %8s | %8s | %9s | %9s | %12s |\n' "dump" "command (client behind $RATE)" "file MiB" "seconds" "SQL MiB/s" "x kubectl" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "-----------" "----------------------------------------------" "----------" "----------" "-----------" "-----------" "--------------"
row "kubectl exec -- pg_dumpall > file" "$OUT/m.out" \
  timeout 3600 "$KUBECTL" -n "$NS" exec $POD -- sh -c \
  'PGPASSWORD="$POSTGRES_PASSWORD" exec pg_dumpall -U "$POSTGRES_USER"'
row "kubectl exec -- pg_dumpall, gzip -1 in pod" "$OUT/m.out" \
  timeout 3600 "$KUBECTL" -n "$NS" exec $POD -- sh -c \
  'PGPASSWORD="$POSTGRES_PASSWORD" pg_dumpall -U "$POSTGRES_USER" | gzip -1'
row "kubectl exec -- pg_dumpall, zstd -1 in pod" "$OUT/m.out" \
  timeout 3600 "$KUBECTL" -n "$NS" exec $POD -- sh -c \
  'PGPASSWORD="$POSTGRES_PASSWORD" pg_dumpall -U "$POSTGRES_USER" | zstd -1 -q -c'
row "dbbackup (default: .gz, zstd in the pod)" "$OUT/d1.sql.gz" \
  timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" -q postgres -f "$OUT/d1.sql.gz"
row "dbbackup --compress zstd" "$OUT/d2.sql.zst" \
  timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress zstd -f "$OUT/d2.sql.zst"
row "dbbackup --compress-in-pod=false (gzip here)" "$OUT/d3.sql.gz" \
  timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress-in-pod=false -f "$OUT/d3.sql.gz"
row "dbbackup --compress none" "$OUT/d4.sql" \
  timeout 3600 "$BIN"/kubectl-dbbackup -n "$NS" -q postgres --compress none -f "$OUT/d4.sql"
# Restores of the default dump over the same link, each into a server without appdb.
reset() { echo "DROP DATABASE IF EXISTS appdb WITH (FORCE);" | psql_in $POD postgres >/dev/null; }
exec_psql='PGPASSWORD="$POSTGRES_PASSWORD" exec psql -X -q -U "$POSTGRES_USER" -d postgres'
reset
NEW_REF=1 row "restore: gzip -dc f.sql.gz | kubectl exec -i psql" "$OUT/d1.sql.gz" \
  sh -c 'gzip -dc "$5" | timeout 3600 "$1" -n "$2" exec -i "$3" -- sh -c "$4" >/dev/null' sh \
  "$KUBECTL" "$NS" $POD "$exec_psql" "$OUT/d1.sql.gz"
reset
row "restore: dbbackup restore -f f.sql.gz" "$OUT/d1.sql.gz" \
  timeout 3600 "$BIN"/kubectl-dbbackup restore postgres -n "$NS" -q -f "$OUT/d1.sql.gz"
reset
row "restore: dbbackup restore --compress-in-pod=false" "$OUT/d1.sql.gz" \
  timeout 3600 "$BIN"/kubectl-dbbackup restore postgres -n "$NS" -q -f "$OUT/d1.sql.gz" --compress-in-pod=false
# kubectl exits 0 on a stream cut short: say so when its plain dump lacks pg_dumpall's trailer.
tail -c 200 "$SQL" | grep -q 'PostgreSQL database cluster dump complete' ||
  echo "warning: kubectl's plain dump has no completion trailer: it was cut short ($(stat -c %s "$SQL") bytes)"
echo
echo "link: veth $HOST_ADDR <-> $CLIENT_ADDR, tbf $RATE each way; kubectl exec of random bytes over it: $probe"
echo "$PROFILE build ($BIN); SQL MiB/s = the plain dump's bytes / seconds"
