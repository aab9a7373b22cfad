#!/usr/bin/env bash
# Shell helpers to run a throwaway PostgreSQL cluster (sourced by demo.sh and bench.sh).
# pg_start DIR  -> sets PGPORT_T, PGSOCK_T; starts a cluster with scram auth on 127.0.0.1
# pg_admin ARGS -> psql as the superuser over the private socket
# pg_stop       -> stops it (immediate) and removes DIR
set -euo pipefail

pg_bin_dir() {
  if [ -n "${PG_TEST_BIN_DIR:-}" ]; then echo "$PG_TEST_BIN_DIR"; return; fi
  # Resolved: a folder on PATH may hold only links to initdb and pg_ctl (the server's own
  # folder has pg_basebackup and the rest).
  if command -v initdb >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
  find /usr/lib/postgresql -maxdepth 3 -name initdb -path '*/bin/*' 2>/dev/null | sort -V | tail -n 1 | xargs -r dirname
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pg_start() {
  PG_DIR_T="$1"
  PG_BIN_T="$(pg_bin_dir)"
  [ -n "$PG_BIN_T" ] || { echo "PostgreSQL server binaries not found (run scripts/install-deps.sh postgres)" >&2; return 1; }
  mkdir -p "$PG_DIR_T"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR_T"
  echo "admin-secret" > "$PG_DIR_T/pw"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR_T/pw"
  PGPORT_T="$(free_port)"
  PGSOCK_T="$PG_DIR_T"
  as_pg "$PG_BIN_T/initdb" -D "$PG_DIR_T/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$PG_DIR_T/pw" --no-sync -E UTF8 --locale=C >/dev/null
  as_pg "$PG_BIN_T/pg_ctl" -D "$PG_DIR_T/data" -l "$PG_DIR_T/log" -w -t 60 \
    -o "-p $PGPORT_T -k $PG_DIR_T -c listen_addresses=127.0.0.1 ${PG_EXTRA_OPTS:-}" start >/dev/null
}

pg_admin() {
  psql -h "$PGSOCK_T" -p "$PGPORT_T" -U postgres -qtAX -v ON_ERROR_STOP=1 "$@"
}

pg_stop() {
  if [ -n "${PG_DIR_T:-}" ] && [ -d "$PG_DIR_T/data" ]; then
    as_pg "$PG_BIN_T/pg_ctl" -D "$PG_DIR_T/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  [ -n "${PG_DIR_T:-}" ] && rm -rf "$PG_DIR_T"
}
