#!/usr/bin/env bash
# Benchmark of the point-in-time archive (docs/PERFORMANCE.md, "Point-in-time"): one throwaway
# PostgreSQL loaded with SIZE_MB of data, then RUNS interleaved rounds of
#   - base backup: ours (the daemon's first full base backup of an empty archive, timed by its
#     record in the archive's index) against `pg_basebackup -Ft -z -X none -D <dir>` (wall, output size);
#   - restore of one database as of a time: ours (`-r … --at T -f bench`, into a new database)
#     against the route a DBA would script (extract the base tar, put the WAL in pg_wal,
#     recover to T in a throwaway server, `pg_dump | psql` into the live server).
#   - two streamers: a daemon archiving this server and a second one (stock settings) while
#     `pgbench -c 2` runs flat out for LAG_SECS (60) against the first: the flush lag
#     (`pg_stat_replication`, sampled every 0.5 s), the daemon's peak RSS (its own, from
#     /proc VmHWM) and its pg_receivewal children's RSS apart.
# Prints medians.
#
#   SIZE_MB=300 RUNS=3 scripts/bench-pitr.sh        (make bench runs it after bench.sh)
#   SIZE_MB=1000 RUNS=2 PARTS=restore WAL_SECS=300 scripts/bench-pitr.sh   (the issue's 1 GB + 5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh

SIZE_MB="${SIZE_MB:-1000}"
RUNS="${RUNS:-3}"
BIN="$(pwd)/${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
WORK="$(mktemp -d /tmp/backup-bench-pitr.XXXXXX)"
chmod 755 "$WORK"
DAEMON=""
SECOND_DIR=""
cleanup() {
  [ -z "$DAEMON" ] || kill "$DAEMON" 2>/dev/null || true
  pg_stop; [ -z "$SECOND_DIR" ] || PG_DIR_T="$SECOND_DIR" pg_stop; rm -rf "$WORK"
}
trap cleanup EXIT

PG_EXTRA_OPTS="-c autovacuum=off -c shared_buffers=256MB -c max_wal_size=4GB" pg_start "$WORK/pg"
pg_admin -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER REPLICATION PASSWORD 'bench-pw'" -c "CREATE DATABASE bench OWNER bench"
scale=$(( SIZE_MB / 19 )); [ "$scale" -ge 1 ] || scale=1
noise_rows=$(( SIZE_MB * 1000000 / 5 / 4200 ))
echo "Loading: pgbench scale $scale + $noise_rows rows of random bytes ..." >&2
PGPASSWORD=bench-pw pgbench -q -i -s "$scale" -h 127.0.0.1 -p "$PGPORT_T" -U bench bench >/dev/null 2>&1
pg_admin -d bench -c "CREATE EXTENSION IF NOT EXISTS pgcrypto" -c "CREATE TABLE attachments (id int PRIMARY KEY, data bytea)"
pg_admin -d bench -c "INSERT INTO attachments SELECT g, gen_random_bytes(1024) || gen_random_bytes(1024) FROM generate_series(1, $noise_rows) g"
pg_admin -d bench -c "VACUUM ANALYZE"

export BACKUP_DIR="$WORK/backups" VERIFY_DIR="$WORK/verify" PITR_SPOOL_DIR="$WORK/spool"
export PITR_SERVERS="localhost:$PGPORT_T" LOCALHOST_USER=bench LOCALHOST_PASSWORD=bench-pw LOCALHOST_REPLICATION_USER=bench LOCALHOST_REPLICATION_PASSWORD=bench-pw
export PITR_BASE_SCHEDULE="@every 1000h" PITR_DRILL_SCHEDULE="@every 1000h" STARTUP_CHECK=false
export BACKUP_CONF="$WORK/backup.conf" BACKUP_ADMIN_USER=bench BACKUP_ADMIN_PASSWORD=bench-pw
echo "localhost:$PGPORT_T/bench" > "$BACKUP_CONF"; echo "0 0 1 1 * default ./backup.sh -s" >> "$BACKUP_CONF"
mkdir -p "$VERIFY_DIR"; chmod 777 "$VERIFY_DIR"
PGBIN="$(pg_bin_dir)"

# PARTS="base restore streamers" (the default) runs those parts only.
part() { [[ " ${PARTS:-base restore streamers} " == *" $1 "* ]]; }
seconds() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Ours: a daemon on an empty archive takes its first full base backup; its log times it.
ours_base() {
  rm -rf "$BACKUP_DIR/pitr" "$PITR_SPOOL_DIR"
  "$BIN" >"$WORK/daemon.log" 2>&1 & DAEMON=$!
  for _ in $(seq 1 600); do grep -q "A full base backup of" "$WORK/daemon.log" && break; sleep 0.5; done
  # The base backup's own record: pg_basebackup started to the backup renamed into place.
  python3 -c 'import json,sys,datetime as d
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="base":
        p=lambda t: d.datetime.fromisoformat(t.replace("Z","+00:00")[:26]+"+00:00")
        print("%.2f" % (p(e["finished_at"])-p(e["started_at"])).total_seconds()); break' "$BACKUP_DIR"/pitr/*/index.jsonl >>"$WORK/ours_base.s"
  du -b "$BACKUP_DIR"/pitr/*/base/1/0/base.tar.* | cut -f1 >>"$WORK/ours_base.bytes"
}
stop_daemon() { kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; DAEMON=""; }

theirs_base() {
  rm -rf "$WORK/pgbb"; local t0; t0=$(seconds)
  PGPASSWORD=bench-pw "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT_T" -U bench -Ft -z -X none -c fast -D "$WORK/pgbb" 2>/dev/null
  echo "$(seconds) - $t0" | bc >>"$WORK/theirs_base.s"
  du -b "$WORK/pgbb/base.tar.gz" | cut -f1 >>"$WORK/theirs_base.bytes"
}

if part base; then
for round in $(seq 1 "$RUNS"); do
  echo "Round $round/$RUNS: base backups ..." >&2
  if [ $(( round % 2 )) -eq 1 ]; then ours_base; stop_daemon; theirs_base; else theirs_base; ours_base; stop_daemon; fi
done

fi

if part restore; then
# The restore: an archive kept by the daemon, WAL_SECS (30) of pgbench after its base backup,
# the target halfway.
rm -rf "$BACKUP_DIR/pitr" "$PITR_SPOOL_DIR"
"$BIN" >"$WORK/daemon.log" 2>&1 & DAEMON=$!
for _ in $(seq 1 600); do grep -q "A full base backup of" "$WORK/daemon.log" && break; sleep 0.5; done
HALF=$(( ${WAL_SECS:-30} / 2 )); [ "$HALF" -ge 1 ] || HALF=1
PGPASSWORD=bench-pw pgbench -T "$HALF" -c 2 -h 127.0.0.1 -p "$PGPORT_T" -U bench bench >/dev/null 2>&1
sleep 1; T=$(date -u +%Y-%m-%dT%H:%M:%S.%6N+00:00); sleep 1
PGPASSWORD=bench-pw pgbench -T "$HALF" -c 2 -h 127.0.0.1 -p "$PGPORT_T" -U bench bench >/dev/null 2>&1
pg_admin -d postgres -c "SELECT pg_switch_wal()" >/dev/null; sleep 20
echo "WAL archived: $(find "$BACKUP_DIR"/pitr/*/wal -type f | wc -l) files, $(du -sm "$BACKUP_DIR"/pitr/*/wal | cut -f1) MB stored" >&2
stop_daemon

ours_restore() {
  pg_admin -d postgres -c "DROP DATABASE IF EXISTS bench_asof" >/dev/null
  local t0; t0=$(seconds)
  "$BIN" -r "localhost:$PGPORT_T/bench_asof" --at "$T" -f bench -s >"$WORK/restore.log" 2>&1 || { cat "$WORK/restore.log" >&2; exit 1; }
  echo "$(seconds) - $t0" | bc >>"$WORK/ours_restore.s"
}

# The DBA's route, by hand: the same base backup and WAL, decoded, recovered to T, dumped and loaded.
theirs_restore() {
  pg_admin -d postgres -c "DROP DATABASE IF EXISTS bench_dba" >/dev/null
  local t0 d; t0=$(seconds); d="$WORK/dba"
  rm -rf "$d"; mkdir -p "$d/data"
  gzip -dc "$BACKUP_DIR"/pitr/*/base/1/0/base.tar.gz | tar -x -C "$d/data"
  for f in "$BACKUP_DIR"/pitr/*/wal/*/*.gz; do case "$f" in *partial*) ;; *) gzip -dc "$f" > "$d/data/pg_wal/$(basename "$f" .gz)";; esac; done
  : > "$d/data/postgresql.auto.conf"
  printf "restore_command = 'false'\nrecovery_target_time = '%s'\nrecovery_target_action = 'promote'\nport = 5499\nlisten_addresses = ''\nunix_socket_directories = '%s'\nhot_standby = off\n" "$T" "$d" >> "$d/data/postgresql.conf"
  touch "$d/data/recovery.signal"; chmod 700 "$d/data"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$d"
  as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log" -w -t 600 start >/dev/null || { tail -5 "$d/log" >&2; exit 1; }
  for _ in $(seq 1 600); do [ "$(psql -h "$d" -p 5499 -U postgres -XAtc 'SELECT pg_is_in_recovery()' postgres 2>/dev/null)" = "f" ] && break; sleep 0.2; done
  pg_admin -d postgres -c "CREATE DATABASE bench_dba OWNER bench" >/dev/null
  "$PGBIN/pg_dump" -h "$d" -p 5499 -U postgres bench | PGPASSWORD=bench-pw psql -q -h 127.0.0.1 -p "$PGPORT_T" -U bench -X -v ON_ERROR_STOP=1 bench_dba >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null
  echo "$(seconds) - $t0" | bc >>"$WORK/theirs_restore.s"
  rm -rf "$d"
}

for round in $(seq 1 "$RUNS"); do
  echo "Round $round/$RUNS: restores as of a time ..." >&2
  if [ $(( round % 2 )) -eq 1 ]; then ours_restore; theirs_restore; else theirs_restore; ours_restore; fi
done

fi

if part streamers; then
# Two streamers: this server and a second one, pgbench flat out against the first.
LAG_SECS="${LAG_SECS:-60}"
FIRST_DIR="$PG_DIR_T" FIRST_PORT="$PGPORT_T"
pg_start "$WORK/pg2"
SECOND_DIR="$PG_DIR_T" SECOND_PORT="$PGPORT_T"
pg_admin -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER REPLICATION PASSWORD 'bench-pw'" -c "CREATE DATABASE bench OWNER bench"
PG_DIR_T="$FIRST_DIR" PGPORT_T="$FIRST_PORT" PGSOCK_T="$FIRST_DIR"
rm -rf "$BACKUP_DIR/pitr" "$PITR_SPOOL_DIR"
echo "Two streamers, pgbench flat out for ${LAG_SECS}s ..." >&2
PITR_SERVERS="localhost:$FIRST_PORT,localhost:$SECOND_PORT" "$BIN" >"$WORK/daemon.log" 2>&1 & DAEMON=$!
for _ in $(seq 1 600); do [ "$(grep -c "A full base backup of" "$WORK/daemon.log")" -ge 2 ] && break; sleep 0.5; done
[ "$(grep -c "A full base backup of" "$WORK/daemon.log")" -ge 2 ] || { tail -20 "$WORK/daemon.log" >&2; exit 1; }
PGPASSWORD=bench-pw pgbench -T "$LAG_SECS" -c 2 -j 2 -h 127.0.0.1 -p "$FIRST_PORT" -U bench bench >"$WORK/pgbench.out" 2>&1 & BENCH=$!
: >"$WORK/lag.s"; : >"$WORK/receivewal.kb"
while kill -0 "$BENCH" 2>/dev/null; do
  pg_admin -d postgres -c "SELECT COALESCE(EXTRACT(epoch FROM flush_lag), 0), pg_wal_lsn_diff(pg_current_wal_flush_lsn(), flush_lsn)
    FROM pg_stat_replication WHERE state = 'streaming'" >>"$WORK/lag.s" 2>/dev/null || true
  kids=0; for k in $(pgrep -P "$DAEMON" pg_receivewal); do kids=$(( kids + $(awk '/VmRSS/ {print $2}' "/proc/$k/status" 2>/dev/null || echo 0) )); done
  echo "$kids" >>"$WORK/receivewal.kb"
  sleep 0.5
done
wait "$BENCH"
tps=$(awk '/^tps/ {print int($3); exit}' "$WORK/pgbench.out")
peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$DAEMON/status")
stop_daemon
lag_max=$(cut -d'|' -f1 "$WORK/lag.s" | sort -n | tail -n 1)
lag_med=$(cut -d'|' -f1 "$WORK/lag.s" | median)
bytes_max=$(cut -d'|' -f2 "$WORK/lag.s" | sort -n | tail -n 1)
bytes_med=$(cut -d'|' -f2 "$WORK/lag.s" | median)
kids_max=$(sort -n "$WORK/receivewal.kb" | tail -n 1)

fi

if part base; then
  ob=$(median <"$WORK/ours_base.s"); tb=$(median <"$WORK/theirs_base.s")
  oz=$(median <"$WORK/ours_base.bytes"); tz=$(median <"$WORK/theirs_base.bytes")
fi
if part restore; then
  orr=$(median <"$WORK/ours_restore.s"); tr=$(median <"$WORK/theirs_restore.s")
fi
if part base || part restore; then
  printf "\nPoint-in-time, SIZE_MB=%s, RUNS=%s (medians)\n" "$SIZE_MB" "$RUNS"
  printf "%-52s %9s %12s %8s\n" "command" "wall s" "output MB" "ratio"
fi
if part base; then
  # Sizes to 10 kB: the goal is "no larger", and the two are within a percent.
  printf "%-52s %9.2f %12.2f %8s\n" "pg_basebackup -Ft -z -X none" "$tb" "$(echo "$tz/1000000" | bc -l)" "1.00"
  printf "%-52s %9.2f %12.2f %8.2f\n" "backup-container base backup (daemon)" "$ob" "$(echo "$oz/1000000" | bc -l)" "$(echo "$ob/$tb" | bc -l)"
fi
if part restore; then
  printf "%-52s %9.2f %12s %8s\n" "DBA route: extract, recover to T, pg_dump | psql" "$tr" "-" "1.00"
  printf "%-52s %9.2f %12s %8.2f\n" "backup-container -r … --at T (checks, counts)" "$orr" "-" "$(echo "$orr/$tr" | bc -l)"
fi
if part streamers; then
  printf "\nTwo streamers, pgbench -c 2 flat out for %ss against one (%s tps), %s samples\n" "$LAG_SECS" "${tps:-?}" "$(wc -l <"$WORK/lag.s")"
  printf "%-52s %9.2f s (median %.2f s)\n" "flush lag (pg_stat_replication), max" "$lag_max" "$lag_med"
  printf "%-52s %9.2f MB (median %.2f MB)\n" "WAL flushed by the server, not yet by us, max" "$(echo "${bytes_max:-0}/1000000" | bc -l)" "$(echo "${bytes_med:-0}/1000000" | bc -l)"
  printf "%-52s %9.1f MB\n" "daemon peak RSS (VmHWM, children apart)" "$(echo "$peak_kb/1024" | bc -l)"
  printf "%-52s %9.1f MB\n" "pg_receivewal children together, max RSS" "$(echo "$kids_max/1024" | bc -l)"
fi
