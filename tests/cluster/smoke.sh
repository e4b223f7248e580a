#!/usr/bin/env bash
# Smoke test of the kubectl-db local cluster (tests/cluster/cluster.sh up must have run):
#   - the node is Ready;
#   - a PVC of the default class `standard` binds, a non-root pod can write into it, and the
#     released volume is deleted (reclaim Delete);
#   - PostgreSQL and MariaDB pods from the local images get Running and Ready (exec readiness
#     probes), as root, as their own uid with readOnlyRootFilesystem, and (postgres) as an
#     arbitrary uid; `exec` returns the server version; password logins over TCP work;
#   - a StatefulSet pod that is deleted comes back with its data;
#   - cluster DNS: <pod>.<headless-svc>.<ns>.svc.cluster.local resolves to the pod's IP, and
#     another pod logs in to PostgreSQL through that name (pod-to-pod over the bridge).
# Everything lives in a throwaway namespace that is deleted on exit. Exits non-zero with a
# message on the first failure. Env: KUBECONFIG (default: the cluster's), KDB_SMOKE_KEEP=1
# keeps the namespace for debugging.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${KDB_CLUSTER_STATE:-/var/tmp/kubectl-db-cluster}
CACHE=${KDB_CACHE:-$HOME/.cache/kubectl-db}
KUBECTL=${KDB_KUBECTL:-$CACHE/k8s-v1.34.4/bin/kubectl}
export KUBECONFIG=${KUBECONFIG:-$STATE/kubeconfig}
NS=kdb-smoke-$$-$RANDOM
T0=$SECONDS

log() { echo "[smoke $((SECONDS - T0))s] $*" >&2; }
fail() {
  echo "[smoke] FAIL: $*" >&2
  exit 1
}
kc() { timeout "${KC_TIMEOUT:-60}" "$KUBECTL" "$@"; }
k() { kc -n "$NS" "$@"; }

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    echo "[smoke] --- diagnostics for namespace $NS" >&2
    k get pods,pvc -o wide >&2 2>&1 || true
    k get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 25 >&2 || true
    local p
    for p in $(k get pods -o name 2>/dev/null); do
      echo "[smoke] --- logs of $p" >&2; k logs "$p" --all-containers --tail=30 >&2 2>&1 || true
    done
  fi
  if [[ ${KDB_SMOKE_KEEP:-} == 1 ]]; then
    log "keeping namespace $NS"
  else
    KC_TIMEOUT=150 kc delete namespace "$NS" --wait=true --timeout=140s >/dev/null 2>&1 ||
      echo "[smoke] warning: namespace $NS not deleted cleanly" >&2
  fi
  if ((rc == 0)); then log "PASS"; else echo "[smoke] FAILED (exit $rc)" >&2; fi
  exit $rc
}

# wait_until DESCRIPTION SECONDS CMD...
wait_until() {
  local what=$1 limit=$2 i; shift 2
  for ((i = 0; i < limit; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  fail "timed out after ${limit}s: $what"
}

pod_ready() {
  [[ $(k get pod "$1" -o 'jsonpath={.status.phase}/{.status.conditions[?(@.type=="Ready")].status}') == Running/True ]]
}
pod_ready_new() { # pod NAME ready with a UID other than $2
  [[ $(k get pod "$1" -o 'jsonpath={.metadata.uid}') != "$2" ]] && pod_ready "$1"
}

# --- manifests ----------------------------------------------------------------------------
# statefulset NAME IMAGE SECCTX_YAML MOUNT_PATH EXTRA_ENV_YAML PROBE CONTAINER_EXTRA_YAML POD_VOLUMES_YAML
statefulset() {
  local name=$1 image=$2 podsec=$3 mount=$4 env=$5 probe=$6 cextra=$7 vols=$8
  cat <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: $name}
spec:
  serviceName: $name
  replicas: 1
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      terminationGracePeriodSeconds: 10
      securityContext: $podsec
      containers:
      - name: db
        image: $image
        imagePullPolicy: IfNotPresent
        envFrom: [{secretRef: {name: smoke-secret}}]
        env: $env
        readinessProbe:
          exec: {command: [sh, -c, '$probe']}
          periodSeconds: 2
          failureThreshold: 3
$cextra
        volumeMounts:
        - {name: data, mountPath: $mount}
$(sed 's/^/        /' <<<"${MOUNTS[$name]:-}")
      volumes: $vols
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
EOF
}

declare -A MOUNTS
PG_PROBE='psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "select 1"'
PG_ENV='[{name: PGPASSWORD, valueFrom: {secretKeyRef: {name: smoke-secret, key: POSTGRES_PASSWORD}}}, {name: PGDATA, value: /var/lib/postgresql/data/pgdata}]'
MY_PROBE='MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mysqladmin -uroot ping'
RO_CTX='        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}'

manifests() {
  local pw mpw
  pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)
  mpw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)
  cat <<EOF
apiVersion: v1
kind: Secret
metadata: {name: smoke-secret}
stringData:
  POSTGRES_PASSWORD: "p$pw"
  POSTGRES_USER: app
  POSTGRES_DB: appdb
  MYSQL_ROOT_PASSWORD: "r$mpw"
  MYSQL_DATABASE: appdb
  MYSQL_USER: app
  MYSQL_PASSWORD: "u$pw"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: smoke-config}
data:
  postgresql.conf: |
    listen_addresses = '*'
    max_connections = 50
    shared_buffers = 32MB
  init.sql: |
    CREATE TABLE from_init(v int); INSERT INTO from_init VALUES (42);
  kubectl-db.cnf: |
    [mysqld]
    datadir = /var/lib/mysql/data
    max_connections = 50
    innodb_buffer_pool_size = 64M
---
EOF
  # PostgreSQL as uid 70 with a read-only root, started like the product starts it.
  MOUNTS[pg-uid70]='- {name: run, mountPath: /var/run/postgresql}
- {name: tmp, mountPath: /tmp}
- {name: config, mountPath: /etc/postgresql/kubectl-db, readOnly: true}'
  statefulset pg-uid70 docker.io/library/postgres:15-alpine '{runAsUser: 70, runAsGroup: 70, fsGroup: 70}' \
    /var/lib/postgresql/data "$PG_ENV" "$PG_PROBE" \
    "$RO_CTX
        args: [postgres, -c, config_file=/etc/postgresql/kubectl-db/postgresql.conf]" \
    '[{name: run, emptyDir: {}}, {name: tmp, emptyDir: {}}, {name: config, configMap: {name: smoke-config, items: [{key: postgresql.conf, path: postgresql.conf}]}}]'
  echo ---
  # PostgreSQL started as root (drops to uid 70).
  MOUNTS[pg-root]='- {name: init, mountPath: /docker-entrypoint-initdb.d, readOnly: true}'
  statefulset pg-root localhost/kdb/postgres:15 '{}' /var/lib/postgresql/data "$PG_ENV" "$PG_PROBE" "" \
    '[{name: init, configMap: {name: smoke-config, items: [{key: init.sql, path: init.sql}]}}]'
  echo ---
  # PostgreSQL as an arbitrary uid without a passwd entry (nss_wrapper).
  MOUNTS[pg-anyuid]='- {name: run, mountPath: /var/run/postgresql}
- {name: tmp, mountPath: /tmp}'
  statefulset pg-anyuid localhost/kdb/postgres:15 '{runAsUser: 12345, runAsGroup: 12345, fsGroup: 12345}' \
    /var/lib/postgresql/data "$PG_ENV" "$PG_PROBE" "$RO_CTX" \
    '[{name: run, emptyDir: {}}, {name: tmp, emptyDir: {}}]'
  echo ---
  # MariaDB as mysql:8.0, started as root, datadir from a conf.d file.
  MOUNTS[my-root]='- {name: config, mountPath: /etc/mysql/conf.d, readOnly: true}'
  statefulset my-root docker.io/library/mysql:8.0 '{}' /var/lib/mysql '[]' "$MY_PROBE" "" \
    '[{name: config, configMap: {name: smoke-config, items: [{key: kubectl-db.cnf, path: kubectl-db.cnf}]}}]'
  echo ---
  # MariaDB as uid 999 with a read-only root.
  MOUNTS[my-uid999]='- {name: run, mountPath: /var/run/mysqld}
- {name: tmp, mountPath: /tmp}
- {name: config, mountPath: /etc/mysql/conf.d, readOnly: true}
- {name: init, mountPath: /docker-entrypoint-initdb.d, readOnly: true}'
  statefulset my-uid999 docker.io/library/mariadb:10.11 '{runAsUser: 999, runAsGroup: 999, fsGroup: 999}' \
    /var/lib/mysql '[]' "$MY_PROBE" "$RO_CTX" \
    '[{name: run, emptyDir: {}}, {name: tmp, emptyDir: {}}, {name: config, configMap: {name: smoke-config, items: [{key: kubectl-db.cnf, path: kubectl-db.cnf}]}}, {name: init, configMap: {name: smoke-config, items: [{key: init.sql, path: init.sql}]}}]'
  echo ---
  # A plain claim of the default class, written by a non-root pod.
  cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: pg-uid70}
spec:
  clusterIP: None
  selector: {app: pg-uid70}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: plain}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 4321, runAsGroup: 4321}
  containers:
  - name: w
    image: docker.io/library/busybox:1.36
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo hello > /data/hello && cat /data/hello']
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: plain}}]
EOF
}

# --- checks -------------------------------------------------------------------------------
pg_sql() { k exec -i "$1-0" -- sh -c 'psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA' <<<"$2"; }
my_sql() { k exec -i "$1-0" -- sh -c 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -N "$MYSQL_DATABASE"' <<<"$2"; }

check_version() { # NAME pg|my
  local v
  if [[ $2 == pg ]]; then v=$(k exec "$1-0" -- sh -c 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "SELECT version()"') \
    || fail "$1: exec SELECT version() failed"
  else v=$(k exec "$1-0" -- sh -c 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mysql -uroot -N -e "SELECT version()"') \
    || fail "$1: exec SELECT version() failed"; fi
  [[ -n $v ]] || fail "$1: empty version"
  log "$1: $v"
}

check_tcp_login() { # NAME pg|my : the application user logs in over TCP with its password
  if [[ $2 == pg ]]; then
    k exec "$1-0" -- sh -c 'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "select 1"' >/dev/null \
      || fail "$1: password login over TCP failed"
    if k exec "$1-0" -- sh -c 'PGPASSWORD=wrong psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "select 1"' >/dev/null 2>&1; then
      fail "$1: a wrong password was accepted over TCP"
    fi
  else
    k exec "$1-0" -- sh -c 'MYSQL_PWD="$MYSQL_PASSWORD" mysql -h127.0.0.1 -u"$MYSQL_USER" -N "$MYSQL_DATABASE" -e "select 1"' >/dev/null \
      || fail "$1: MYSQL_USER login over TCP failed"
  fi
}

main() {
  [[ -x $KUBECTL ]] || fail "kubectl not found at $KUBECTL (run tests/cluster/cluster.sh up)"
  [[ -s $KUBECONFIG ]] || fail "no kubeconfig at $KUBECONFIG (run tests/cluster/cluster.sh up)"
  [[ $(kc get nodes -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{end}') == True ]] \
    || fail "node not Ready"
  log "node Ready"
  trap cleanup EXIT
  kc create namespace "$NS" >/dev/null || fail "cannot create namespace $NS"
  wait_until "default ServiceAccount in $NS" 30 k get serviceaccount default
  manifests | k apply -f - >/dev/null || fail "apply failed"

  wait_until "PVC plain Bound" 60 bash -c "[[ \$(timeout 20 '$KUBECTL' -n '$NS' get pvc plain -o jsonpath='{.status.phase}') == Bound ]]"
  wait_until "pod writer Succeeded" 60 bash -c "[[ \$(timeout 20 '$KUBECTL' -n '$NS' get pod writer -o jsonpath='{.status.phase}') == Succeeded ]]"
  [[ $(k logs writer) == hello ]] || fail "writer pod could not write to its volume"
  log "PVC from the default class bound, non-root pod wrote to it"

  local s
  for s in pg-uid70 pg-root pg-anyuid my-root my-uid999; do
    wait_until "$s-0 Running and Ready" 180 pod_ready "$s-0"
    log "$s-0 Running and Ready"
  done
  for s in pg-uid70 pg-root pg-anyuid; do check_version "$s" pg; check_tcp_login "$s" pg; done
  for s in my-root my-uid999; do check_version "$s" my; check_tcp_login "$s" my; done
  # uid checks: the database runs as the expected uid
  [[ $(k exec pg-root-0 -- sh -c 'stat -c %u "$PGDATA"') == 70 ]] || fail "pg-root: PGDATA not owned by uid 70"
  [[ $(k exec my-root-0 -- stat -c %u /var/lib/mysql/data/mysql) == 999 ]] || fail "my-root: datadir not owned by uid 999"

  # Cluster DNS and pod-to-pod traffic: pg-root-0 reaches pg-uid70-0 by its stable name.
  local ip got
  ip=$(k get pod pg-uid70-0 -o 'jsonpath={.status.podIP}')
  got=$(k exec pg-root-0 -- getent hosts "pg-uid70-0.pg-uid70.$NS.svc.cluster.local" | awk '{print $1}') || true
  [[ -n $ip && $got == "$ip" ]] || fail "DNS: pg-uid70-0.pg-uid70.$NS.svc.cluster.local -> '$got', pod IP $ip"
  k exec pg-root-0 -- sh -c 'PGPASSWORD="$POSTGRES_PASSWORD" psql -h pg-uid70-0.pg-uid70 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "select 1"' >/dev/null \
    || fail "pg-root-0 cannot log in to pg-uid70-0.pg-uid70 over the pod network"
  log "DNS name pg-uid70-0.pg-uid70.$NS.svc.cluster.local -> $ip, reachable from another pod"

  # /docker-entrypoint-initdb.d ran at initialisation.
  [[ $(pg_sql pg-root "SELECT v FROM from_init;") == 42 ]] || fail "pg-root: /docker-entrypoint-initdb.d/init.sql did not run"
  [[ $(my_sql my-uid999 "SELECT v FROM from_init;") == 42 ]] || fail "my-uid999: /docker-entrypoint-initdb.d/init.sql did not run"
  log "/docker-entrypoint-initdb.d scripts ran"

  # Data survives deleting the StatefulSet pod.
  pg_sql pg-uid70 "CREATE TABLE smoke(v text); INSERT INTO smoke VALUES ('kept-pg');" >/dev/null || fail "pg-uid70: write failed"
  my_sql my-root "CREATE TABLE smoke(v text); INSERT INTO smoke VALUES ('kept-my');" >/dev/null || fail "my-root: write failed"
  local pg_uid my_uid
  pg_uid=$(k get pod pg-uid70-0 -o 'jsonpath={.metadata.uid}')
  my_uid=$(k get pod my-root-0 -o 'jsonpath={.metadata.uid}')
  k delete pod pg-uid70-0 my-root-0 --wait=false >/dev/null
  wait_until "pg-uid70-0 back and Ready" 180 pod_ready_new pg-uid70-0 "$pg_uid"
  wait_until "my-root-0 back and Ready" 180 pod_ready_new my-root-0 "$my_uid"
  [[ $(pg_sql pg-uid70 "SELECT v FROM smoke;") == kept-pg ]] || fail "pg-uid70: row lost after pod deletion"
  [[ $(my_sql my-root "SELECT v FROM smoke;") == kept-my ]] || fail "my-root: row lost after pod deletion"
  log "StatefulSet pods came back with their data"

  # Reclaim Delete: the plain claim's volume goes away with the claim.
  local pv
  pv=$(k get pvc plain -o 'jsonpath={.spec.volumeName}')
  k delete pod writer --wait=true >/dev/null
  k delete pvc plain --wait=true >/dev/null
  wait_until "PV $pv deleted after its claim" 60 bash -c "! timeout 20 '$KUBECTL' get pv '$pv' >/dev/null 2>&1"
  log "released volume $pv deleted"
}

main "$@"
