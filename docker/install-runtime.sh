#!/usr/bin/env bash
# Installs the runtime packages of the image: PostgreSQL client and server binaries (dump,
# restore, verification), tini, tzdata, CA certificates, curl (health check).
# Used by docker/Dockerfile, and run by CI with PG_SOURCE=debian so these steps stay tested
# on a machine without a Docker engine.
#   PG_MAJOR=17 PG_SOURCE=pgdg docker/install-runtime.sh     (the image: PostgreSQL's apt repository)
#   PG_MAJOR=15 PG_SOURCE=debian docker/install-runtime.sh   (Debian bookworm's own PostgreSQL)
#   PG_MAJORS="13 14 15 16 17 18" (the default): client tools and server binaries of every major,
#   so each server is dumped with its own major's client and verified in its own major
#   (docs/VERSIONS.md). PG_MAJOR=N keeps meaning "this one major only" for existing build configs.
#   WITH_MARIADB=1 adds the MariaDB client and server (mariadb= specs: dump, restore, verify).
#   DRY_RUN=1 prints the packages per major and installs nothing.
set -euo pipefail
PG_SOURCE="${PG_SOURCE:-pgdg}"
if [ -n "${PG_MAJOR:-}" ]; then
  majors="$PG_MAJOR"
else
  majors="${PG_MAJORS:-13 14 15 16 17 18}"
fi
majors=${majors//,/ }
export DEBIAN_FRONTEND=noninteractive

packages=()
for major in $majors; do
  case "$major" in
    1[3-9]) ;;
    *) echo "install-runtime: unsupported PostgreSQL major '$major' (13 to 18)" >&2; exit 2 ;;
  esac
  # The server package brings initdb/pg_ctl/postgres for verification in that major.
  packages+=("postgresql-${major}" "postgresql-client-${major}")
done
if [ "${DRY_RUN:-0}" = 1 ]; then
  for major in $majors; do echo "PostgreSQL ${major}: postgresql-${major} postgresql-client-${major}"; done
  exit 0
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl tzdata tini >/dev/null
if [ "$PG_SOURCE" = pgdg ]; then
  apt-get install -y -qq --no-install-recommends gnupg >/dev/null
  install -d /usr/share/postgresql-common/pgdg
  curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc
  . /etc/os-release
  echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
    > /etc/apt/sources.list.d/pgdg.list
  apt-get update -qq
  # End-of-life majors (13 since November 2025) leave PGDG's main repository for its archive.
  for major in $majors; do
    if ! apt-cache show "postgresql-${major}" >/dev/null 2>&1; then
      echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt-archive.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg-archive main" \
        > /etc/apt/sources.list.d/pgdg-archive.list
      apt-get update -qq
      break
    fi
  done
fi
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
for major in $majors; do
  for tool in pg_dump pg_dumpall psql initdb pg_ctl postgres; do
    test -x "/usr/lib/postgresql/${major}/bin/${tool}" || { echo "missing ${tool} for PostgreSQL ${major}" >&2; exit 1; }
  done
done
if [ "${WITH_MARIADB:-0}" = 1 ]; then
  apt-get install -y -qq --no-install-recommends mariadb-client mariadb-server >/dev/null
  for tool in mariadb mariadb-dump mariadb-admin mariadb-install-db; do command -v "$tool" >/dev/null; done
  test -x /usr/sbin/mariadbd
fi
command -v tini >/dev/null
echo "runtime packages installed: PostgreSQL ${majors} (${PG_SOURCE}), MariaDB: ${WITH_MARIADB:-0}, tini, tzdata, ca-certificates, curl"
