#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmark need on a fresh Debian/Ubuntu machine.
# Idempotent: installs only what is missing. Usage: scripts/install-deps.sh [postgres] [pigz] ...
# With no arguments: everything the test suite needs.
set -euo pipefail

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(postgres)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "install-deps: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_pg_server() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

for item in "${want[@]}"; do
  case "$item" in
    postgres)
      if ! have_pg_server || ! command -v pg_dump >/dev/null || ! command -v psql >/dev/null; then
        echo "install-deps: installing PostgreSQL server and client (apt)"
        apt_install postgresql postgresql-client postgresql-contrib
      fi
      # runuser (util-linux) runs initdb as the postgres user when we are root.
      command -v runuser >/dev/null || apt_install util-linux
      ;;
    pigz | zstd | hyperfine | bc)
      command -v "$item" >/dev/null || apt_install "$item"
      ;;
    node)
      command -v node >/dev/null || apt_install nodejs
      ;;
    time)
      [ -x /usr/bin/time ] || apt_install time
      ;;
    *)
      echo "install-deps: unknown component '$item'" >&2
      exit 2
      ;;
  esac
done
