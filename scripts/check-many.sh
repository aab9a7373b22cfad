#!/usr/bin/env bash
# Times `--check` over N empty databases on one throwaway server: N=200 scripts/check-many.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh
W=$(mktemp -d); chmod 755 "$W"
pg_start "$W/pg"
N=${N:-200}
for i in $(seq 1 "$N"); do echo "CREATE DATABASE d$i;"; done | pg_admin -d postgres >/dev/null
: > "$W/backup.conf"
for i in $(seq 1 "$N"); do echo "localhost:$PGPORT_T/d$i" >> "$W/backup.conf"; done
mkdir -p "$W/verify"; chmod 777 "$W/verify"
start=$(date +%s.%N)
BACKUP_CONF="$W/backup.conf" BACKUP_DIR="$W/backups" VERIFY_DIR="$W/verify" LOCALHOST_USER=postgres LOCALHOST_PASSWORD=admin-secret \
  target/debug/backup-container --check > "$W/out.txt" 2>/dev/null || true
end=$(date +%s.%N)
echo "databases=$N seconds=$(echo "$end - $start" | bc) rows=$(wc -l < "$W/out.txt") fails=$(grep -c '^FAIL' "$W/out.txt" || true)"
tail -3 "$W/out.txt"
pg_stop
