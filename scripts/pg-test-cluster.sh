#!/usr/bin/env bash
# pg-test-cluster.sh starts and stops a throwaway PostgreSQL cluster for the
# test suites (AGENTOS_TEST_POSTGRES_URL), using the machine's PostgreSQL
# binaries (/usr/lib/postgresql/*/bin, or PG_BINDIR).
#
#   eval "$(scripts/pg-test-cluster.sh start [dir])"
#       initdb into dir (default: a new mktemp -d under ${TMPDIR:-/tmp}),
#       start the server on 127.0.0.1 at a free port (and a unix socket in
#       dir), create the database agentos_test and print ONLY
#         export AGENTOS_TEST_POSTGRES_URL='postgres://...'
#         export AGENTOS_TEST_POSTGRES_DIR='dir'
#       on stdout. Everything else goes to stderr.
#   scripts/pg-test-cluster.sh stop "$AGENTOS_TEST_POSTGRES_DIR"
#       stop the server and delete dir.
#   scripts/pg-test-cluster.sh halt <dir>    (pg_ctl stop -m fast)
#   scripts/pg-test-cluster.sh resume <dir>  (pg_ctl start, same port)
#       stop the server and start it again with its data and port, for
#       the fault tests (a PostgreSQL restart under load).
#
# The cluster trusts every local connection (it listens on loopback only) and
# runs with fsync off: it is for tests, its data is thrown away. initdb
# refuses to run as root, so as root the cluster is owned by and run as the
# user postgres (or nobody when there is no such user).
set -euo pipefail

log() { echo "pg-test-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  cat >&2 <<'EOF'
usage: pg-test-cluster.sh start [dir]   start a cluster, print export lines
       pg-test-cluster.sh stop <dir>    stop it and remove dir
       pg-test-cluster.sh halt <dir>    stop its server (fast), keep dir
       pg-test-cluster.sh resume <dir>  start its server again, same port
EOF
  exit 2
}

# bindir finds the PostgreSQL server binaries, newest major version first.
bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/initdb" ] || die "PG_BINDIR=$PG_BINDIR has no initdb"
    echo "$PG_BINDIR"
    return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$d" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "no PostgreSQL binaries found; installing postgresql from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2 ||
      { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2; }
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -n "$d" ] && [ -x "$d/initdb" ] || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin (set PG_BINDIR)"
  echo "$d"
}

# runas runs a command as the cluster's owner: itself, or a non-root user
# when running as root.
OWNER=""
pick_owner() {
  if [ "$(id -u)" != 0 ]; then
    OWNER=""
  elif id postgres >/dev/null 2>&1; then
    OWNER=postgres
  else
    OWNER=nobody
  fi
}
runas() {
  if [ -z "$OWNER" ]; then
    "$@"
  elif command -v runuser >/dev/null; then
    runuser -u "$OWNER" -- "$@"
  else
    su -s /bin/sh "$OWNER" -c "$(printf '%q ' "$@")"
  fi
}

# port_busy reports whether something listens on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local dir=${1:-}
  local bin
  bin=$(bindir)
  pick_owner
  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/agentos-pg.XXXXXX")
  else
    mkdir -p "$dir"
    [ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
  fi
  dir=$(cd "$dir" && pwd)
  touch "$dir/.agentos-pg-test-cluster"
  chmod 0755 "$dir"
  if [ -n "$OWNER" ]; then
    chown "$OWNER" "$dir"
    runas test -w "$dir" || die "$dir is not reachable by the user $OWNER (is a parent directory private?)"
  fi
  log "initdb in $dir/data with $bin (owner: ${OWNER:-$(id -un)})"
  runas "$bin/initdb" -D "$dir/data" -U agentos -A trust -E UTF8 --no-locale -N >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }

  local port="" try opts
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if port_busy "$port"; then
      continue
    fi
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=64MB"
    if runas "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$opts" >&2; then
      echo "$opts" >"$dir/server.opts"
      break
    fi
    log "start on port $port failed (attempt $try):"
    tail -n 5 "$dir/server.log" >&2 || true
    port=""
  done
  [ -n "$port" ] || die "could not start PostgreSQL; see $dir/server.log"

  "$bin/createdb" -h 127.0.0.1 -p "$port" -U agentos agentos_test >&2 || die "createdb failed"
  log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$port"
  echo "export AGENTOS_TEST_POSTGRES_URL='postgres://agentos@127.0.0.1:$port/agentos_test?sslmode=disable'"
  echo "export AGENTOS_TEST_POSTGRES_DIR='$dir'"
}

stop() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  [ -d "$dir" ] || { log "$dir does not exist; nothing to stop"; return 0; }
  [ -e "$dir/.agentos-pg-test-cluster" ] || die "$dir was not made by pg-test-cluster.sh; refusing to touch it"
  local bin
  bin=$(bindir)
  pick_owner
  if [ -f "$dir/data/postmaster.pid" ]; then
    runas "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >&2 || log "pg_ctl stop failed"
  fi
  rm -rf "$dir"
  log "stopped and removed $dir"
}

# ours checks that dir is a cluster this script made.
ours() {
  [ -n "${1:-}" ] || usage
  [ -e "$1/.agentos-pg-test-cluster" ] || die "$1 was not made by pg-test-cluster.sh; refusing to touch it"
}

halt() {
  ours "${1:-}"
  local bin
  bin=$(bindir)
  pick_owner
  runas "$bin/pg_ctl" -D "$1/data" -m fast -w -t 60 stop >&2
}

resume() {
  ours "${1:-}"
  local bin
  bin=$(bindir)
  pick_owner
  runas "$bin/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 start -o "$(cat "$1/server.opts")" >&2
}

case "${1:-}" in
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
halt) shift; halt "$@" ;;
resume) shift; resume "$@" ;;
*) usage ;;
esac
