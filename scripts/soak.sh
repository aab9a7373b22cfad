#!/usr/bin/env bash
# Soak bench: the daemon backs up a small database every second for RUNS runs (default 200);
# its resident memory is sampled after the first 10 runs and at the end, from /proc.
# Flat memory means no leak per run.   Usage: RUNS=200 scripts/soak.sh   (make soak)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh

RUNS="${RUNS:-200}"
BIN="${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
WORK="$(mktemp -d /tmp/backup-soak.XXXXXX)"
chmod 755 "$WORK"
DAEMON_PID=""
cleanup() { [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null; pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

pg_start "$WORK/pg"
pg_admin -d postgres -c "CREATE ROLE soak LOGIN PASSWORD 'soak-pw'" -c "CREATE DATABASE soak OWNER soak"
pg_admin -d soak -c "SET ROLE soak; CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g"
HPORT="$(free_port)"
printf 'localhost:%s/soak\n@every 1s default ./backup.sh -s\n' "$PGPORT_T" > "$WORK/backup.conf"
BACKUP_CONF="$WORK/backup.conf" BACKUP_DIR="$WORK/backups" LOCALHOST_USER=soak LOCALHOST_PASSWORD=soak-pw \
  HEALTH_ADDR="127.0.0.1:$HPORT" DAILY_BACKUPS=3 WEEKLY_BACKUPS=3 MONTHLY_BACKUPS=3 \
  "$BIN" 2>"$WORK/daemon.log" &
DAEMON_PID=$!

runs() { curl -fs "http://127.0.0.1:$HPORT/metrics" 2>/dev/null | awk '/^backup_runs_total/ {s += $2} END {print s + 0}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$DAEMON_PID/status"; }
wait_runs() { while [ "$(runs)" -lt "$1" ]; do kill -0 "$DAEMON_PID" || { cat "$WORK/daemon.log"; exit 1; }; sleep 1; done; }

wait_runs 10
early=$(rss_kb)
echo "after 10 runs: RSS ${early} KiB" >&2
wait_runs "$RUNS"
late=$(rss_kb)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$DAEMON_PID/status")
failed=$(curl -fs "http://127.0.0.1:$HPORT/metrics" | awk '/^backup_runs_total\{result="failure"\}/ {print $2}')
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=""
printf '\n| runs | RSS after 10 runs | RSS after %s runs | peak RSS (VmHWM) | failed runs | backups kept |\n' "$RUNS"
printf '|------|-------------------|--------------------|------------------|-------------|--------------|\n'
printf '| %s | %s KiB | %s KiB | %s KiB | %s | %s |\n' "$RUNS" "$early" "$late" "$hwm" "${failed:-0}" \
  "$(find "$WORK/backups" -name '*.sql.gz' | wc -l)"
