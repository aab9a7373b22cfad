#!/usr/bin/env bash
# Benchmark of the row-count check of `-r` and `-v` (docs/PERFORMANCE.md, "Row counts"): how
# long counting every table's rows takes in databases of 600 and 5 000 tables (half of the
# 5 000 are partitions), which one transaction over all tables could not count at all (it ran
# out of lock table). Each round restores the same dump with `-r` (count check on) and reads
# the count step's own time from its log ("Counted every table's rows", count_seconds); the
# whole restore's wall time is printed beside it. RUNS interleaved rounds, medians.
#
#   RUNS=3 scripts/bench-counts.sh        (make bench runs it after bench-pitr.sh)
#   BASELINE=/path/to/older/backup-container scripts/bench-counts.sh
#                                         (each round also restores with that binary, rows side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh

RUNS="${RUNS:-3}"
BIN="$(pwd)/${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
BASELINE="${BASELINE:-}"
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "BASELINE=$BASELINE is not an executable" >&2; exit 2; }
WORK="$(mktemp -d /tmp/backup-bench-counts.XXXXXX)"
chmod 755 "$WORK"
cleanup() { pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

PG_EXTRA_OPTS="-c autovacuum=off -c fsync=off -c synchronous_commit=off" pg_start "$WORK/pg"
pg_admin -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER PASSWORD 'bench-pw'"
export PGPASSWORD=bench-pw BACKUP_ADMIN_USER=bench BACKUP_ADMIN_PASSWORD=bench-pw BACKUP_DIR="$WORK/backups"
export LOCALHOST_USER=bench LOCALHOST_PASSWORD=bench-pw

# A database of $2 tables: plain tables of 3 rows, and (for the 5 000) partitioned tables of
# 50 partitions each making up half of them.
make_db() {
  local db="$1" n="$2" parted=0
  [ "$n" -ge 5000 ] && parted=$(( n / 2 ))
  pg_admin -d postgres -c "CREATE DATABASE $db OWNER bench"
  # One statement per table (a single transaction over thousands would run out of lock table).
  {
    for i in $(seq 1 $(( n - parted ))); do
      echo "CREATE TABLE t$i (id int, v text); INSERT INTO t$i SELECT g, md5(g::text) FROM generate_series(1, 3) g;"
    done
    for p in $(seq 1 $(( parted / 50 ))); do
      echo "CREATE TABLE p$p (id int, v text) PARTITION BY RANGE (id);"
      for k in $(seq 0 49); do
        echo "CREATE TABLE p${p}_$k PARTITION OF p$p FOR VALUES FROM ($(( k * 10 ))) TO ($(( k * 10 + 10 )));"
      done
      echo "INSERT INTO p$p SELECT g, md5(g::text) FROM generate_series(0, 499) g;"
    done
  } | pg_admin -d "$db" -f - >/dev/null
  pg_dump -h 127.0.0.1 -p "$PGPORT_T" -U bench "$db" | gzip -3 > "$WORK/$db.sql.gz"
}

read -ra sizes <<<"${SIZES:-600 5000}"
for n in "${sizes[@]}"; do
  echo "Creating a database of $n tables ..." >&2
  make_db "wide_$n" "$n"
done

# restore N [BINARY LABEL]: one -r of the N-table dump, its times appended under LABEL.
restore() {
  local n="$1" bin="${2:-$BIN}" label="${3:-}" log="$WORK/restore.log" t0
  t0=$(date +%s.%N)
  "$bin" -r "localhost:$PGPORT_T/copy_$n" -f "$WORK/wide_$n.sql.gz" -s >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  echo "$(date +%s.%N) - $t0" | bc >>"$WORK/wall_$n$label"
  local counted; counted=$(grep "Counted every table's rows" "$log" | tail -n 1)
  echo "$counted" | grep -o 'count_seconds="*[0-9.]*' | grep -o '[0-9.]*$' >>"$WORK/count_$n$label"
  echo "$counted" | grep -o ' tables=[0-9]*' | grep -o '[0-9]*$' >"$WORK/tables_$n$label"
}

# Both binaries for one size, in the round's order.
restore_each() {
  if [ -z "$BASELINE" ]; then restore "$1"
  elif [ $(( round % 2 )) -eq 1 ]; then restore "$1"; restore "$1" "$BASELINE" _baseline
  else restore "$1" "$BASELINE" _baseline; restore "$1"; fi
}

for round in $(seq 1 "$RUNS"); do
  echo "Round $round/$RUNS ..." >&2
  if [ $(( round % 2 )) -eq 1 ]; then restore_each 600; restore_each 5000; else restore_each 5000; restore_each 600; fi
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\nRow counts of -r: %s rounds, medians; %s cores; PostgreSQL %s; %s\n\n' "$RUNS" "$(nproc)" \
  "$(pg_admin -d postgres -c 'SHOW server_version' | cut -d' ' -f1)" "$(date -u +%Y-%m-%d)"
printf '| %-24s | %14s | %16s | %15s |\n' "database" "tables counted" "count step, s" "whole -r, s"
printf '|%s|\n' "--------------------------|----------------|------------------|-----------------"
for n in "${sizes[@]}"; do
  for label in "" ${BASELINE:+_baseline}; do
    [ -s "$WORK/count_$n$label" ] || { echo "no count_seconds in the restore log of wide_$n$label" >&2; exit 1; }
    printf '| %-24s | %14s | %16s | %15.2f |\n' "$n tables${label:+ (baseline)}" "$(cat "$WORK/tables_$n$label")" \
      "$(median <"$WORK/count_$n$label")" "$(median <"$WORK/wall_$n$label")"
  done
done
for n in "${sizes[@]}"; do
  for label in "" ${BASELINE:+_baseline}; do
    echo "rounds, $n tables${label:+ (baseline)}: count $(paste -sd' ' "$WORK/count_$n$label"); whole $(paste -sd' ' "$WORK/wall_$n$label")" >&2
  done
done
