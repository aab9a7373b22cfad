#!/usr/bin/env bash
# A run's cost against the history in the folder: N small databases on one throwaway server,
# backed up by `-1` into an empty folder, and into a folder that already holds H backups of
# each (copies of real backups with earlier dates, recorded by a first, unmeasured run;
# retention keeps them all: BACKUP_STRATEGY=daily NUM_BACKUPS=400). RUNS interleaved rounds,
# medians. PREV_BIN=<an older build> measures that build the same way, for comparison.
#   N=200 H=60 RUNS=3 scripts/bench-history.sh     (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh
N=${N:-200}
H=${H:-60}
RUNS=${RUNS:-3}
BIN="${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
W=$(mktemp -d); chmod 755 "$W"
trap 'pg_stop; rm -rf "$W"' EXIT
pg_start "$W/pg"
for i in $(seq 1 "$N"); do echo "CREATE DATABASE d$i;"; done | pg_admin -d postgres >/dev/null
for i in $(seq 1 "$N"); do
  echo "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g;" | pg_admin -d "d$i" >/dev/null
done
echo "localhost:$PGPORT_T/*" > "$W/backup.conf"
export BACKUP_CONF="$W/backup.conf" LOCALHOST_USER=postgres LOCALHOST_PASSWORD=admin-secret \
  BACKUP_EXCLUDE_DATABASES=postgres STARTUP_CHECK=false BACKUP_STRATEGY=daily NUM_BACKUPS=400 \
  BACKUP_ANOMALY_HOLD=0 TZ=UTC
run() { # $1: folder, $2: binary; prints seconds
  local s; s=$(date +%s.%N)
  BACKUP_DIR="$1" "$2" -1 >/dev/null 2>"$W/log" || { grep -E "ERROR|error" "$W/log" | head -5 >&2; exit 1; }
  echo "$(date +%s.%N) - $s" | bc
}
# The history: one real backup per database, copied to H earlier days, then recorded.
run "$W/seed" "$BIN" >/dev/null
mkdir -p "$W/history"
find "$W/seed" -name '*.sql.gz' | while read -r f; do
  core=$(basename "$f" | sed -E 's/_[0-9]{4}-[0-9]{2}-[0-9]{2}_.*//')
  for d in $(seq 1 "$H"); do
    day=$(date -u -d "2020-01-01 + $d days" +%Y-%m-%d)
    mkdir -p "$W/history/daily/$day"
    cp "$f" "$W/history/daily/$day/${core}_${day}_01-00-00.sql.gz"
  done
done
run "$W/history" "$BIN" >/dev/null   # records every copy (integrity pass), not measured
measure() { # $1: binary, $2: label
  rm -rf "$W/empty"; run "$W/empty" "$1" >> "$W/empty_$2"
  rm -rf "$W/h"; cp -a "$W/history" "$W/h"; run "$W/h" "$1" >> "$W/history_$2"
}
for ((r = 0; r < RUNS; r++)); do
  measure "$BIN" now
  [ -z "${PREV_BIN:-}" ] || measure "$PREV_BIN" prev
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
report() { # $1: label, $2: binary
  local e h; e=$(median < "$W/empty_$1"); h=$(median < "$W/history_$1")
  printf '%s (%s): %s databases, empty folder %.2f s, with %s backups each of history %.2f s (%.2f x)\n' \
    "$1" "$2" "$N" "$e" "$H" "$h" "$(echo "$h / $e" | bc -l)"
}
report now "$BIN"
[ -z "${PREV_BIN:-}" ] || report prev "$PREV_BIN"
