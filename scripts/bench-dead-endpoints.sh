#!/usr/bin/env bash
# A run's wall time with endpoints that accept connections and never answer (a chat server
# behind a dead proxy): N small databases on one throwaway server, `-1` with no endpoint, with
# a hanging webhook (default limits), and with a hanging webhook and S3 mirror (short limits:
# WEBHOOK_TIMEOUT=3s WEBHOOK_ATTEMPTS=2 S3_TIMEOUT=3s MIRROR_ATTEMPTS=2).
#   N=30 scripts/bench-dead-endpoints.sh     (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh
N=${N:-30}
BIN="${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
W=$(mktemp -d); chmod 755 "$W"
# A listener that accepts and never reads, on a free port each.
hang() {
  python3 -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(128); print(s.getsockname()[1], flush=True)
held=[]
while True:
    c,_=s.accept(); held.append(c)' > "$W/$1.port" &
  echo $!
}
H1=$(hang webhook); H2=$(hang s3)
trap 'kill "$H1" "$H2" 2>/dev/null; pg_stop; rm -rf "$W"' EXIT
for f in webhook s3; do
  for _ in $(seq 50); do [ -s "$W/$f.port" ] && break; sleep 0.1; done
done
WEBHOOK_PORT=$(cat "$W/webhook.port"); S3_PORT=$(cat "$W/s3.port")
pg_start "$W/pg"
for i in $(seq 1 "$N"); do echo "CREATE DATABASE d$i;"; done | pg_admin -d postgres >/dev/null
echo "localhost:$PGPORT_T/*" > "$W/backup.conf"
export BACKUP_CONF="$W/backup.conf" LOCALHOST_USER=postgres LOCALHOST_PASSWORD=admin-secret \
  BACKUP_EXCLUDE_DATABASES=postgres STARTUP_CHECK=false
t() { # prints the wall time and the exit code of "$@"
  local s rc=0; s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || rc=$?
  printf '%.1f s, exit %s' "$(echo "$(date +%s.%N) - $s" | bc)" "$rc"
}
echo "databases: $N"
echo "healthy endpoints (none): $(BACKUP_DIR=$W/b1 t "$BIN" -1)"
echo "hanging webhook, default limits: $(BACKUP_DIR=$W/b2 WEBHOOK_URL=http://127.0.0.1:$WEBHOOK_PORT t "$BIN" -1)"
echo "hanging webhook and S3, 3s x 2: $(BACKUP_DIR=$W/b3 WEBHOOK_URL=http://127.0.0.1:$WEBHOOK_PORT \
  WEBHOOK_TIMEOUT=3s WEBHOOK_ATTEMPTS=2 S3_TIMEOUT=3s MIRROR_ATTEMPTS=2 S3_ENDPOINT=http://127.0.0.1:$S3_PORT \
  S3_BUCKET=b S3_USER=u S3_PASSWORD=p t "$BIN" -1)"
