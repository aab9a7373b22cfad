#!/usr/bin/env bash
# Benchmark: one throwaway PostgreSQL loaded with a reproducible data set; every command below
# runs against it in the same session, RUNS times, interleaved (each round runs every command
# in a rotating order, every other round backwards, so that background noise hits all alike and
# no command always follows the same one). Prints one table of medians: wall and CPU time, peak
# RSS, output size, and ratios to `pg_dump > /dev/null` and `gzip -6`.
#
#   SIZE_MB=1000 RUNS=3 scripts/bench.sh        (make bench)
#   EXTRA="gzip:2 gzip:3" adds backup-container variants (algorithm:level).
#   ONLY="restore|verify" runs only the matching commands (plus the two baselines).
#   VERIFY_TMP=disk puts verification's throwaway servers in the work folder (default: tmpfs).
#   WARM_MB=3000 writes and frees that much memory (tmpfs) right before every command.
#   STATEMENT_STATS=1 has the tuned server log each statement's CPU (log_statement_stats) and
#   prints, per restore, the user and system CPU the server spent inside its statements.
#
# SIZE_MB is the approximate size of the plain dump.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh

SIZE_MB="${SIZE_MB:-1000}"
RUNS="${RUNS:-3}"
EXTRA="${EXTRA:-}"
BIN="${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
WORK="$(mktemp -d /tmp/backup-bench.XXXXXX)"
chmod 755 "$WORK"
NORMAL_DIR=""
VERIFY_AT=""
cleanup() { pg_stop; [ -z "$NORMAL_DIR" ] || PG_DIR_T="$NORMAL_DIR" pg_stop; rm -rf "$WORK"; [ -z "$VERIFY_AT" ] || rm -rf "$VERIFY_AT"; }
trap cleanup EXIT

# Autovacuum is off on both servers: after a restore it vacuums and analyzes the new gigabyte
# for many seconds, which would land on whichever command runs next (the rotation keeps the
# same neighbours in every round). The data set is VACUUM ANALYZEd once after loading.
#
# A server with PostgreSQL's stock settings (fsync on): the "normal server" that the plain
# restore baseline for verification goes into (verification tunes its own throwaway server).
PG_EXTRA_OPTS="-c autovacuum=off" pg_start "$WORK/pg-normal"
NORMAL_DIR="$PG_DIR_T" NORMAL_PORT="$PGPORT_T"
normal() { psql -qtAX -h 127.0.0.1 -p "$NORMAL_PORT" -U bench "$@"; }
pg_admin -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER PASSWORD 'bench-pw'"

# The server holding the data set, tuned for loading it quickly.
PG_EXTRA_OPTS="-c autovacuum=off -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB -c max_wal_size=4GB"
pg_start "$WORK/pg"
pg_admin -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER PASSWORD 'bench-pw'" -c "CREATE DATABASE bench OWNER bench"

# Data set: about half pgbench (numbers, narrow rows), half text/JSON/bytea rows.
scale=$(( SIZE_MB / 19 )); [ "$scale" -ge 1 ] || scale=1
mixed_rows=$(( SIZE_MB * 1000000 / 2 / 300 ))
echo "Loading: pgbench scale $scale + $mixed_rows mixed rows (dump ~${SIZE_MB} MB) ..." >&2
PGPASSWORD=bench-pw pgbench -q -i -s "$scale" -h 127.0.0.1 -p "$PGPORT_T" -U bench bench >/dev/null 2>&1
pg_admin -d bench -c "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, who text, email text, note text, payload jsonb, digest bytea)"
pg_admin -d bench -c "INSERT INTO events SELECT g, timestamptz '2024-01-01' + g * interval '1 second', 'user ' || (g % 50000),
  'user' || (g % 50000) || '@example.org', repeat(md5(g::text), 2),
  jsonb_build_object('n', g, 'kind', (ARRAY['click','view','buy','refund'])[1 + g % 4], 'tags', jsonb_build_array(g % 7, g % 11)),
  decode(md5((g * 7)::text) || md5((g * 13)::text), 'hex') FROM generate_series(1, $mixed_rows) g"
# Data that does not compress: random bytes (a fifth of the dump), as photos, archives and
# encrypted columns are.
noise_rows=$(( SIZE_MB * 1000000 / 5 / 4200 ))
pg_admin -d bench -c "CREATE EXTENSION IF NOT EXISTS pgcrypto" -c "CREATE TABLE attachments (id int PRIMARY KEY, data bytea)"
pg_admin -d bench -c "INSERT INTO attachments SELECT g, gen_random_bytes(1024) || gen_random_bytes(1024) FROM generate_series(1, $noise_rows) g"
pg_admin -d bench -c "VACUUM ANALYZE"

if [ "${STATEMENT_STATS:-0}" = 1 ]; then
  pg_admin -d postgres -c "ALTER SYSTEM SET log_statement_stats = on" -c "SELECT pg_reload_conf()" >/dev/null
fi

export PGPASSWORD=bench-pw
DUMP=(pg_dump -h 127.0.0.1 -p "$PGPORT_T" -U bench -Fp bench)
printf 'localhost:%s/bench\n' "$PGPORT_T" > "$WORK/backup.conf"
export BACKUP_CONF="$WORK/backup.conf" LOCALHOST_USER=bench LOCALHOST_PASSWORD=bench-pw
export BACKUP_ADMIN_USER=bench BACKUP_ADMIN_PASSWORD=bench-pw VERIFY_MAX_AGE=0
# Verification's throwaway servers go to memory (tmpfs) when it has room: this machine's disk is
# mounted with online discard, and a verification writing and deleting 1.3 GB on it raised the
# server CPU of the restores after it in the same run (docs/PERFORMANCE.md, "A verification
# beside the restores"). VERIFY_TMP=<dir> chooses another place; VERIFY_TMP=disk keeps $WORK.
VERIFY_TMP="${VERIFY_TMP:-/dev/shm}"
if [ "$VERIFY_TMP" != disk ] && [ -d "$VERIFY_TMP" ] && [ -w "$VERIFY_TMP" ] \
  && [ "$(df -Pm "$VERIFY_TMP" | awk 'NR == 2 {print $4}')" -gt $(( SIZE_MB * 4 )) ]; then
  VERIFY_AT="$(mktemp -d "$VERIFY_TMP/backup-bench-verify.XXXXXX")"
else
  VERIFY_AT="$WORK/verify"; mkdir -p "$VERIFY_AT"
fi
chmod 777 "$VERIFY_AT"
echo "Verifications' throwaway servers in $VERIFY_AT" >&2

# A fixed backup to restore and verify, made once with the default settings.
BACKUP_DIR="$WORK/source" "$BIN" -1 2>/dev/null
SOURCE="$(find "$WORK/source" -name '*.sql.gz' | head -n 1)"

names=("pg_dump > /dev/null" "pg_dump | gzip -6")
command -v pigz >/dev/null && names+=("pg_dump | pigz -6")
command -v zstd >/dev/null && names+=("pg_dump | zstd -3 -T0")
names+=("backup-container -1 (default gzip)" "backup-container -1 (zstd)")
for v in $EXTRA; do names+=("backup-container -1 ($v)"); done
# Encryption's cost: the default backup, encrypted to an age key (a throwaway one).
if command -v age-keygen >/dev/null; then
  age-keygen -o "$WORK/age.key" 2>/dev/null
  AGE_PUBLIC=$(age-keygen -y "$WORK/age.key")
  names+=("backup-container -1 (gzip + age)")
fi
# pg_restore -j2 of a directory-format dump of the same database (made once): the fastest
# restore PostgreSQL itself offers, for a format the bash version cannot use.
"${DUMP[@]/-Fp/-Fd}" -j2 -f "$WORK/dirdump" 2>/dev/null
names+=("drop, create, gunzip -c | psql" "drop, create, pg_restore -j2 (directory dump)")
names+=("backup-container -r (restore)" "backup-container -r (RESTORE_JOBS=1)" "backup-container -r (RESTORE_JOBS=2)")
names+=("backup-container -r (RESTORE_LOADER=psql)")
names+=("backup-container -r (RESTORE_SPILL_MB=0)")
names+=("gunzip -c | psql, stock server" "backup-container -r, stock server" "backup-container -v (verify)")
names+=("backup-container -v (RESTORE_JOBS=4)")
# Verification as it was before the load in our own process (psql, one session): the baseline
# of the restore-speed issue's verification goal.
names+=("backup-container -v (RESTORE_LOADER=psql, RESTORE_JOBS=1)")
if [ -n "${ONLY:-}" ]; then
  kept=()
  for n in "${names[@]}"; do
    case "$n" in "pg_dump > /dev/null" | "pg_dump | gzip -6") kept+=("$n") ;; *) echo "$n" | grep -Eq "$ONLY" && kept+=("$n") ;; esac
  done
  names=("${kept[@]}")
fi

TIMEFMT="%e %U %S %M"
# What a restore has to do: drop the old copy, create the database, load the dump ($1: file,
# $2: port).
# shellcheck disable=SC2016 # the inner shell expands $1 and $2
PLAIN_RESTORE='psql -q -X -h 127.0.0.1 -p "$2" -U bench -d postgres -c "DROP DATABASE IF EXISTS plain_restore WITH (FORCE)" \
  -c "CREATE DATABASE plain_restore" && gunzip -c "$1" | psql -q -X -h 127.0.0.1 -p "$2" -U bench -d plain_restore >/dev/null 2>&1'
# The same for pg_restore -j2 of a directory dump ($1: its folder).
# shellcheck disable=SC2016 # the inner shell expands $1 and $2
DIR_RESTORE='psql -q -X -h 127.0.0.1 -p "$2" -U bench -d postgres -c "DROP DATABASE IF EXISTS dir_restore WITH (FORCE)" \
  -c "CREATE DATABASE dir_restore" && pg_restore -j2 -h 127.0.0.1 -p "$2" -U bench -d dir_restore "$1"'

key() { echo "$1" | tr -c 'a-zA-Z0-9' _; }

# CPU seconds both servers' processes have used and been reaped for (the postmasters' own and
# their children's): a command's server CPU is the difference before and after it.
server_cpu() {
  local total=0 dir pid
  for dir in "$PG_DIR_T" "$NORMAL_DIR"; do
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    total=$(echo "$total + $(awk '{print ($14+$15+$16+$17)/100}' "/proc/$pid/stat")" | bc)
  done
  echo "$total"
}

# run NAME: one execution; appends "wall cpu rss_kb bytes" to $WORK/<key>.results
run() {
  local name="$1" out="$WORK/out" t="$WORK/time" own="" bytes=0
  rm -rf "$out" "$WORK/backups"
  # Every command starts with no dirty buffers and no pending checkpoint on either server, and
  # no dirty pages in the kernel left by the previous command.
  pg_admin -d postgres -c CHECKPOINT
  normal -d postgres -c CHECKPOINT
  sync
  # WARM_MB: every command starts right after that much memory was written and freed. On this
  # VM, memory free for a few seconds goes back to the host (balloon free page reporting), and
  # the next page-cache write into it costs ten times the kernel time: a restore that drops the
  # old database first reuses what it freed, one that keeps it until the new one is proven
  # does not (docs/PERFORMANCE.md).
  if [ "${WARM_MB:-0}" -gt 0 ]; then
    head -c "${WARM_MB}M" /dev/zero > "/dev/shm/bench-warm.$$" && rm -f "/dev/shm/bench-warm.$$"
  fi
  local srv_before; srv_before=$(server_cpu)
  local log_at; log_at=$(stat -c %s "$PG_DIR_T/log")
  case "$name" in
    "pg_dump > /dev/null") /usr/bin/time -f "$TIMEFMT" -o "$t" "${DUMP[@]}" >/dev/null ;;
    "pg_dump | gzip -6") /usr/bin/time -f "$TIMEFMT" -o "$t" bash -o pipefail -c '"$@" | gzip -6 > '"$out" _ "${DUMP[@]}" ;;
    "pg_dump | pigz -6") /usr/bin/time -f "$TIMEFMT" -o "$t" bash -o pipefail -c '"$@" | pigz -6 > '"$out" _ "${DUMP[@]}" ;;
    "pg_dump | zstd -3 -T0") /usr/bin/time -f "$TIMEFMT" -o "$t" bash -o pipefail -c '"$@" | zstd -q -3 -T0 > '"$out" _ "${DUMP[@]}" ;;
    "backup-container -1 ("*)
      local v="${name#*(}"; v="${v%)}"; local env=()
      case "$v" in
        "default gzip") ;;
        zstd) env=(BACKUP_COMPRESSION=zstd) ;;
        "gzip + age") env=(BACKUP_ENCRYPTION_RECIPIENTS="$AGE_PUBLIC") ;;
        *) env=(BACKUP_COMPRESSION="${v%%:*}" BACKUP_COMPRESSION_LEVEL="${v##*:}") ;;
      esac
      env "${env[@]}" BACKUP_DIR="$WORK/backups" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -1 2>"$WORK/log"
      out=$(find "$WORK/backups" -name '*.sql.*' ! -name '*.sha256' | head -n 1) ;;
    "drop, create, gunzip -c | psql") /usr/bin/time -f "$TIMEFMT" -o "$t" bash -o pipefail -c "$PLAIN_RESTORE" _ "$SOURCE" "$PGPORT_T" ;;
    "gunzip -c | psql, stock server") /usr/bin/time -f "$TIMEFMT" -o "$t" bash -o pipefail -c "$PLAIN_RESTORE" _ "$SOURCE" "$NORMAL_PORT" ;;
    "drop, create, pg_restore -j2 (directory dump)")
      /usr/bin/time -f "$TIMEFMT" -o "$t" bash -o pipefail -c "$DIR_RESTORE" _ "$WORK/dirdump" "$PGPORT_T" ;;
    "backup-container -r (RESTORE_LOADER=psql)")
      RESTORE_LOADER=psql BACKUP_DIR="$WORK/source" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -r "localhost:$PGPORT_T/our_restore" -f "$SOURCE" -s 2>"$WORK/log" ;;
    "backup-container -r (RESTORE_SPILL_MB=0)")
      RESTORE_SPILL_MB=0 BACKUP_DIR="$WORK/source" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -r "localhost:$PGPORT_T/our_restore" -f "$SOURCE" -s 2>"$WORK/log" ;;
    "backup-container -r (RESTORE_JOBS="*)
      local jobs="${name#*=}"; jobs="${jobs%)}"
      RESTORE_JOBS="$jobs" BACKUP_DIR="$WORK/source" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -r "localhost:$PGPORT_T/our_restore" -f "$SOURCE" -s 2>"$WORK/log" ;;
    "backup-container -v (RESTORE_LOADER=psql, RESTORE_JOBS=1)")
      RESTORE_LOADER=psql RESTORE_JOBS=1 BACKUP_DIR="$WORK/source" VERIFY_DIR="$VERIFY_AT" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -v "localhost:$PGPORT_T/bench" 2>"$WORK/log" ;;
    "backup-container -v (RESTORE_JOBS=4)")
      RESTORE_JOBS=4 BACKUP_DIR="$WORK/source" VERIFY_DIR="$VERIFY_AT" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -v "localhost:$PGPORT_T/bench" 2>"$WORK/log" ;;
    "backup-container -r (restore)")
      BACKUP_DIR="$WORK/source" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -r "localhost:$PGPORT_T/our_restore" -f "$SOURCE" -s 2>"$WORK/log" ;;
    "backup-container -r, stock server")
      BACKUP_DIR="$WORK/source" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -r "localhost:$NORMAL_PORT/our_restore" -f "$SOURCE" -s 2>"$WORK/log" ;;
    "backup-container -v (verify)")
      BACKUP_DIR="$WORK/source" VERIFY_DIR="$VERIFY_AT" /usr/bin/time -f "$TIMEFMT" -o "$t" "$BIN" -v "localhost:$PGPORT_T/bench" 2>"$WORK/log" ;;
  esac
  sleep 0.3   # the server reaps the command's backends
  local srv_after; srv_after=$(server_cpu)
  if [ "${STATEMENT_STATS:-0}" = 1 ]; then
    tail -c +$((log_at + 1)) "$PG_DIR_T/log" | sed -nE 's/.*[^0-9.]([0-9.]+) s user, ([0-9.]+) s system, .*/\1 \2/p' \
      | awk '{u += $1; s += $2} END {printf "%.2f %.2f\n", u, s}' >> "$WORK/$(key "$name").stmt"
  fi
  read -r w u s m < "$t"
  case "$name" in
    "pg_dump > /dev/null") bytes=$("${DUMP[@]}" | wc -c) ;;
    backup-container*) own=$(grep -o 'peak_rss_kb[^0-9]*[0-9]*' "$WORK/log" | grep -o '[0-9]*$' | tail -n 1); m="${own:-$m}" ;;
  esac
  [ -n "$out" ] && [ -f "$out" ] && bytes=$(stat -c %s "$out")
  echo "$w $(echo "$u + $s" | bc) $m $bytes $(echo "$srv_after - $srv_before" | bc)" >> "$WORK/$(key "$name").results"
}

for ((round = 0; round < RUNS; round++)); do
  n=${#names[@]}
  for ((i = 0; i < n; i++)); do
    # Backwards every other round: each command follows a different one.
    if ((round % 2)); then j=$(( (n - 1 - i + round) % n )); else j=$(( (i + round) % n )); fi
    run "${names[$j]}"
  done
  echo "round $((round + 1))/$RUNS done" >&2
done

# Correctness of what was measured: the outputs decompress and the restores have the rows.
rows() { pg_admin -d "$1" -c "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM pgbench_accounts)"; }
for db in our_restore plain_restore dir_restore; do
  if [ -n "$(pg_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    [ "$(rows "$db")" = "$(rows bench)" ] || { echo "$db has different row counts" >&2; exit 1; }
  fi
done
for db in our_restore plain_restore; do
  if [ -n "$(normal -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    [ "$(normal -d "$db" -c "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM pgbench_accounts)")" = "$(rows bench)" ] \
      || { echo "the stock server's $db has different row counts" >&2; exit 1; }
  fi
done
gzip -t "$SOURCE"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$(key "$1").results" | median; }
raw_wall=$(col "pg_dump > /dev/null" 1)
raw_bytes=$(col "pg_dump > /dev/null" 4)
gzip_wall=$(col "pg_dump | gzip -6" 1)
gzip_bytes=$(col "pg_dump | gzip -6" 4)
printf '\nData set: plain dump %.0f MB; %s rounds, medians; %s cores; %s\n\n' "$(echo "$raw_bytes/1000000" | bc -l)" "$RUNS" "$(nproc)" "$(date -u +%Y-%m-%d)"
printf '| %-46s | %6s | %6s | %9s | %9s | %8s | %9s | %8s |\n' command "wall s" "cpu s" "peak RSS" "output MB" "/pg_dump" "gzip-6 /x" "vs gz-6"
printf '|%s|\n' "------------------------------------------------|--------|--------|-----------|-----------|----------|-----------|---------"
for name in "${names[@]}"; do
  w=$(col "$name" 1); c=$(col "$name" 2); m=$(col "$name" 3); b=$(col "$name" 4)
  rel="-"; faster="-"; size="-"
  case "$name" in
    *restore* | *verify* | *psql* | *"-r, "* | *"-r ("* | *"-v ("*) ;;
    *) rel=$(printf '%.2f' "$(echo "$w/$raw_wall" | bc -l)"); faster=$(printf '%.2f' "$(echo "$gzip_wall/$w" | bc -l)")
       [ "$name" != "pg_dump > /dev/null" ] && size=$(printf '%+.1f%%' "$(echo "($b-$gzip_bytes)*100/$gzip_bytes" | bc -l)") ;;
  esac
  out_mb="-"; [ "$b" != "0" ] && out_mb=$(printf '%.1f' "$(echo "$b/1000000" | bc -l)")
  printf '| %-46s | %6.2f | %6.2f | %6.1f MB | %9s | %8s | %9s | %8s |\n' "$name" "$w" "$c" "$(echo "$m/1024" | bc -l)" "$out_mb" "$rel" "$faster" "$size"
done
echo
if grep -q . "$WORK/$(key "drop, create, gunzip -c | psql").results" 2>/dev/null; then
  plain_wall=$(col "drop, create, gunzip -c | psql" 1)
  echo "Restore and verification wall time / (drop, create, gunzip -c | psql) on the tuned server:"
  for name in "${names[@]}"; do
    case "$name" in
      *"-r ("* | *pg_restore* | *"-v ("*) printf '  %-46s %.2f\n' "$name" "$(echo "$(col "$name" 1)/$plain_wall" | bc -l)" ;;
    esac
  done
  echo
fi
echo "Restores and verifications: CPU seconds of the client and of the servers (medians; the CPU of -v's throwaway server, started by pg_ctl, is in neither):"
for name in "${names[@]}"; do
  case "$name" in
    *restore* | *verify* | *psql* | *"-r ("* | *"-v ("*) printf '  %-46s client %6.2f  server %6.2f\n' "$name" "$(col "$name" 2)" "$(col "$name" 5)" ;;
  esac
done
echo
echo "Wall times of every run (this machine is a VM; single runs vary by up to 20%):"
for name in "${names[@]}"; do
  printf '  %-34s %s\n' "$name" "$(awk '{printf "%s ", $1}' "$WORK/$(key "$name").results")"
done
echo
echo "Server CPU seconds of every run (restores):"
for name in "${names[@]}"; do
  case "$name" in
    *"-v ("*) ;;
    *restore* | *psql* | *"-r ("* | *"-r, "*) printf '  %-34s %s\n' "$name" "$(awk '{printf "%s ", $5}' "$WORK/$(key "$name").results")" ;;
  esac
done
if [ "${STATEMENT_STATS:-0}" = 1 ]; then
  echo
  echo "Server CPU inside the statements of every run, user / system s (log_statement_stats; the tuned server):"
  for name in "${names[@]}"; do
    [ -f "$WORK/$(key "$name").stmt" ] || continue
    case "$name" in
      *"-v ("*) ;;
      *restore* | *psql* | *"-r ("* | *"-r, "*) printf '  %-34s %s\n' "$name" "$(awk '{printf "%s/%s ", $1, $2}' "$WORK/$(key "$name").stmt")" ;;
    esac
  done
fi
echo
echo "Peak RSS of backup-container rows is the process's own (getrusage, logged); other rows: the largest process of the pipeline."
echo "Restore rows restore the same default-gzip backup into a fresh database of the same server."
