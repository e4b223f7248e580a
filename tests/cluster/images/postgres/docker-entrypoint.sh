#!/usr/bin/env bash
# Entrypoint of the local PostgreSQL 15 test image (Debian postgresql-15), honouring the
# contract of the official postgres image:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#   (default postgres), POSTGRES_DB (default = user), PGDATA (default
#   /var/lib/postgresql/data), POSTGRES_INITDB_ARGS, /docker-entrypoint-initdb.d/*.sh|*.sql.
#   `docker-entrypoint.sh postgres ARGS...` passes ARGS through to postgres.
# Started as root it prepares PGDATA and drops to postgres (uid/gid 70, as in
# postgres:15-alpine); started as any other uid (runAsUser + fsGroup) it runs as that uid,
# with a passwd entry from nss_wrapper if the uid has none. Writes only to PGDATA,
# /var/run/postgresql (socket) and /tmp, so it works with readOnlyRootFilesystem.
set -Eeo pipefail

# `docker-entrypoint.sh -c foo=bar` means `postgres -c foo=bar`.
if [[ ${1:0:1} == - ]]; then set -- postgres "$@"; fi

export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
export PGDATA=${PGDATA:-/var/lib/postgresql/data}

log() { echo "docker-entrypoint: $*" >&2; }

# Give an arbitrary uid a passwd entry (initdb and postgres need a user name).
nss_wrapper_if_needed() {
  getent passwd "$(id -u)" >/dev/null 2>&1 && return 0
  local lib
  lib=$(ls /usr/lib/*/libnss_wrapper.so 2>/dev/null | head -n1)
  NSS_WRAPPER_PASSWD=$(mktemp /tmp/nss_passwd.XXXXXX)
  NSS_WRAPPER_GROUP=$(mktemp /tmp/nss_group.XXXXXX)
  printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" >"$NSS_WRAPPER_PASSWD"
  cat /etc/group >"$NSS_WRAPPER_GROUP"
  getent group "$(id -g)" >/dev/null 2>&1 || printf 'postgres:x:%s:\n' "$(id -g)" >>"$NSS_WRAPPER_GROUP"
  export LD_PRELOAD=$lib NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
}

# psql against the temporary, socket-only server started during initialisation.
psql_init() { psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" "$@"; }

run_initdb_d() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)     log "running $f"; if [[ -x $f ]]; then "$f"; else . "$f"; fi ;;
      *.sql)    log "running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
      *)        if [[ -e $f ]]; then log "ignoring $f"; fi ;;
    esac
  done
}

init_database() {
  if [[ -z ${POSTGRES_PASSWORD:-} && ${POSTGRES_HOST_AUTH_METHOD:-} != trust ]]; then
    log "error: database is uninitialized and POSTGRES_PASSWORD is not set"; exit 1
  fi
  log "initialising $PGDATA"
  # Password from a pipe, never from argv. Local socket trusted, as in the official image.
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
         --auth-local=trust --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" -D "$PGDATA" $POSTGRES_INITDB_ARGS >/dev/null
  # Password auth for every host connection.
  printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"

  # Temporary server on the socket only, to create the database and run init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -s start
  if [[ $POSTGRES_DB != postgres ]]; then
    psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  run_initdb_d
  pg_ctl -D "$PGDATA" -m fast -w -s stop
  log "initialisation done"
}

if [[ $1 == postgres ]]; then
  if [[ $(id -u) == 0 ]]; then
    # As root: own the data and socket directories, then re-run as postgres (uid 70).
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql 2>/dev/null || true
    chmod 700 "$PGDATA" 2>/dev/null || true
    chmod 3777 /var/run/postgresql 2>/dev/null || true
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi
  nss_wrapper_if_needed
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA" 2>/dev/null || true
  if [[ ! -s $PGDATA/PG_VERSION ]]; then init_database; fi
fi

exec "$@"
