#!/usr/bin/env bash
# Installs the runtime packages of the image: PostgreSQL client and server binaries (dump,
# restore, verification), tini, tzdata, CA certificates, curl (health check).
# Used by docker/Dockerfile, and run by CI with PG_SOURCE=debian so these steps stay tested
# on a machine without a Docker engine.
#   PG_MAJOR=17 PG_SOURCE=pgdg docker/install-runtime.sh     (the image: PostgreSQL's apt repository)
#   PG_MAJOR=15 PG_SOURCE=debian docker/install-runtime.sh   (Debian bookworm's own PostgreSQL)
#   WITH_MARIADB=1 adds the MariaDB client and server (mariadb= specs: dump, restore, verify).
set -euo pipefail
PG_MAJOR="${PG_MAJOR:-17}"
PG_SOURCE="${PG_SOURCE:-pgdg}"
export DEBIAN_FRONTEND=noninteractive

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
fi
# The server package brings initdb/pg_ctl/postgres for verification.
apt-get install -y -qq --no-install-recommends "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}" >/dev/null
for tool in pg_dump pg_dumpall psql initdb pg_ctl postgres; do
  test -x "/usr/lib/postgresql/${PG_MAJOR}/bin/${tool}" || { echo "missing ${tool} for PostgreSQL ${PG_MAJOR}" >&2; exit 1; }
done
if [ "${WITH_MARIADB:-0}" = 1 ]; then
  apt-get install -y -qq --no-install-recommends mariadb-client mariadb-server >/dev/null
  for tool in mariadb mariadb-dump mariadb-admin mariadb-install-db; do command -v "$tool" >/dev/null; done
  test -x /usr/sbin/mariadbd
fi
command -v tini >/dev/null
echo "runtime packages installed: PostgreSQL ${PG_MAJOR} (${PG_SOURCE}), MariaDB: ${WITH_MARIADB:-0}, tini, tzdata, ca-certificates, curl"
