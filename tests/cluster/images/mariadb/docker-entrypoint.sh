#!/usr/bin/env bash
# Entrypoint of the local MariaDB 10.11 test image (Debian mariadb-server), standing in for
# the official mysql and mariadb images. Contract honoured:
#   MYSQL_ROOT_PASSWORD / MARIADB_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD=yes),
#   MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD (MARIADB_* spellings too),
#   /etc/mysql/conf.d/*.cnf (datadir and socket are read from the configuration, as the
#   official entrypoint does), /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz.
# Started as root it prepares the datadir and drops to mysql (uid/gid 999); started as
# another uid (runAsUser + fsGroup) it runs as that uid. Writes only to the datadir,
# /var/run/mysqld and /tmp, so it works with readOnlyRootFilesystem. Passwords go to the
# server on stdin or in MYSQL_PWD, never in argv.
set -Eeo pipefail

# `docker-entrypoint.sh --foo` means `mariadbd --foo`.
if [[ ${1:0:1} == - ]]; then set -- mariadbd "$@"; fi

log() { echo "docker-entrypoint: $*" >&2; }

# MARIADB_* spellings win over MYSQL_* ones, like the official mariadb image.
for v in ROOT_PASSWORD DATABASE USER PASSWORD ALLOW_EMPTY_PASSWORD ALLOW_EMPTY_ROOT_PASSWORD; do
  m=MARIADB_$v y=MYSQL_$v
  if [[ -n ${!m:-} ]]; then export "$y=${!m}"; fi
done
if [[ -n ${MYSQL_ALLOW_EMPTY_ROOT_PASSWORD:-} ]]; then MYSQL_ALLOW_EMPTY_PASSWORD=$MYSQL_ALLOW_EMPTY_ROOT_PASSWORD; fi

# Value of a server option after all config files and command-line args are applied.
# `my_print_defaults --mysqld` prints every --key=value the server would read; last wins.
server_option() {
  local key=$1 def=$2 v
  shift 2
  v=$( { my_print_defaults --mysqld; printf '%s\n' "$@"; } | sed -n "s/^--$key=//p" | tail -n1)
  echo "${v:-$def}"
}

sql_string() { # escape for a single-quoted SQL string literal
  local s=${1//\\/\\\\}; s=${s//$'\n'/\\n}; echo "${s//\'/\\\'}"
}
sql_ident() { echo "${1//\`/\`\`}"; }

mysql_init() { mariadb --protocol=socket --socket="$SOCKET" -uroot --database=mysql "$@"; }

run_initdb_d() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)     log "running $f"; if [[ -x $f ]]; then "$f"; else . "$f"; fi ;;
      *.sql)    log "running $f"; mysql_init ${MYSQL_DATABASE:+--database="$MYSQL_DATABASE"} <"$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | mysql_init ${MYSQL_DATABASE:+--database="$MYSQL_DATABASE"} ;;
      *)        if [[ -e $f ]]; then log "ignoring $f"; fi ;;
    esac
  done
}

init_database() {
  if [[ -z ${MYSQL_ROOT_PASSWORD:-} && -z ${MYSQL_ALLOW_EMPTY_PASSWORD:-} ]]; then
    log "error: database is uninitialized and MYSQL_ROOT_PASSWORD is not set"; exit 1
  fi
  log "initialising $DATADIR"
  local user_arg=()
  if [[ $(id -u) == 0 ]]; then user_arg=(--user=mysql); fi
  mariadb-install-db "${user_arg[@]}" --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
    --skip-test-db --skip-log-bin --default-time-zone=SYSTEM --loose-innodb_buffer_pool_load_at_startup=0 \
    --loose-innodb_buffer_pool_dump_at_shutdown=0 "${@:2}" >/dev/null

  # Temporary server on the socket only.
  "$1" "${@:2}" --skip-networking --socket="$SOCKET" --skip-log-bin --skip-slave-start \
    --loose-innodb_buffer_pool_load_at_startup=0 --loose-innodb_buffer_pool_dump_at_shutdown=0 &
  local pid=$! i
  for i in $(seq 60); do
    mysql_init -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { log "error: temporary server exited"; exit 1; }
    sleep 1
  done

  local rootpw db user pw
  rootpw=$(sql_string "${MYSQL_ROOT_PASSWORD:-}")
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    echo "DELETE FROM mysql.user WHERE user='' OR (user='root' AND host NOT IN ('localhost'));"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$rootpw';"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '$rootpw';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    echo "GRANT PROXY ON ''@'%' TO 'root'@'%' WITH GRANT OPTION;"
    if [[ -n ${MYSQL_DATABASE:-} ]]; then
      db=$(sql_ident "$MYSQL_DATABASE")
      echo "CREATE DATABASE IF NOT EXISTS \`$db\`;"
    fi
    if [[ -n ${MYSQL_USER:-} && -n ${MYSQL_PASSWORD:-} ]]; then
      user=$(sql_string "$MYSQL_USER"); pw=$(sql_string "$MYSQL_PASSWORD")
      echo "CREATE USER '$user'@'%' IDENTIFIED BY '$pw';"
      if [[ -n ${db:-} ]]; then echo "GRANT ALL ON \`$db\`.* TO '$user'@'%';"; fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | mysql_init

  # From here on root has its password: clients read it from MYSQL_PWD.
  export MYSQL_PWD=${MYSQL_ROOT_PASSWORD:-}
  run_initdb_d
  mariadb-admin --protocol=socket --socket="$SOCKET" -uroot shutdown
  wait "$pid" || true
  unset MYSQL_PWD
  log "initialisation done"
}

case $1 in
  mariadbd|mysqld)
    DATADIR=$(server_option datadir /var/lib/mysql "${@:2}")
    SOCKET=$(server_option socket /run/mysqld/mysqld.sock "${@:2}")
    if [[ $(id -u) == 0 ]]; then
      # As root: own the datadir and socket directory, then re-run as mysql (uid 999).
      mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
      chown mysql:mysql "$DATADIR" "$(dirname "$SOCKET")" 2>/dev/null || true
      exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
    fi
    mkdir -p "$DATADIR"
    if [[ ! -d $DATADIR/mysql ]]; then init_database "$@"; fi
    ;;
esac

exec "$@"
