#!/usr/bin/env bash
# Benchmark: our one-shot backup against pg_dump alone and pg_dump piped into gzip/pigz/zstd,
# on one throwaway PostgreSQL loaded with a reproducible data set, in the same run.
# Prints one table: median wall time, CPU time, peak RSS, output size, and ratios.
#
#   SIZE_MB=1000 RUNS=3 scripts/bench.sh        (make bench)
#
# SIZE_MB is the approximate size of the plain-text dump. Rounds are interleaved (every
# command once per round, in rotating order) so background noise hits all of them alike.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh

SIZE_MB="${SIZE_MB:-1000}"
RUNS="${RUNS:-3}"
BIN="${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
WORK="$(mktemp -d /tmp/backup-bench.XXXXXX)"
chmod 755 "$WORK"
cleanup() { pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

PG_EXTRA_OPTS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB -c max_wal_size=4GB"
pg_start "$WORK/pg"
pg_admin -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER PASSWORD 'bench-pw'" -c "CREATE DATABASE bench OWNER bench"

# Data set: about half pgbench (numeric, narrow rows), half mixed text/JSON/bytea rows.
scale=$(( SIZE_MB / 19 )); [ "$scale" -ge 1 ] || scale=1
mixed_rows=$(( SIZE_MB * 1000000 / 2 / 300 ))
echo "Loading: pgbench scale $scale + $mixed_rows mixed rows (target dump ~${SIZE_MB} MB) ..." >&2
PGPASSWORD=bench-pw pgbench -q -i -s "$scale" -h 127.0.0.1 -p "$PGPORT_T" -U bench bench >/dev/null 2>&1
pg_admin -d bench <<SQL
CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, who text, email text, note text, payload jsonb, digest bytea);
INSERT INTO events
SELECT g, timestamptz '2024-01-01' + g * interval '1 second', 'user ' || (g % 50000),
       'user' || (g % 50000) || '@example.org', repeat(md5(g::text), 2),
       jsonb_build_object('n', g, 'kind', (ARRAY['click','view','buy','refund'])[1 + g % 4], 'tags', jsonb_build_array(g % 7, g % 11)),
       decode(md5((g * 7)::text) || md5((g * 13)::text), 'hex')
FROM generate_series(1, $mixed_rows) g;
VACUUM ANALYZE;
SQL

export PGPASSWORD=bench-pw
DUMP=(pg_dump -h 127.0.0.1 -p "$PGPORT_T" -U bench -Fp bench)
cat > "$WORK/backup.conf" <<CONF
localhost:$PGPORT_T/bench
CONF

declare -A wall cpu rss size
names=()
add() { names+=("$1"); }
add "pg_dump > /dev/null"
add "pg_dump | gzip -6"
command -v pigz >/dev/null && add "pg_dump | pigz -6 -p2"
command -v zstd >/dev/null && add "pg_dump | zstd -3 -T2"
add "backup-container -1 (gzip)"

# run NAME: executes once, appends "wall cpu rss_kb bytes" to $WORK/NAME.results
run() {
  local name="$1" out="$WORK/out" t="$WORK/time"
  rm -rf "$out" "$WORK/backups"
  case "$name" in
    "pg_dump > /dev/null") /usr/bin/time -f "%e %U %S %M" -o "$t" "${DUMP[@]}" >/dev/null ;;
    "pg_dump | gzip -6") /usr/bin/time -f "%e %U %S %M" -o "$t" bash -o pipefail -c '"$@" | gzip -6 > '"$out" _ "${DUMP[@]}" ;;
    "pg_dump | pigz -6 -p2") /usr/bin/time -f "%e %U %S %M" -o "$t" bash -o pipefail -c '"$@" | pigz -6 -p2 > '"$out" _ "${DUMP[@]}" ;;
    "pg_dump | zstd -3 -T2") /usr/bin/time -f "%e %U %S %M" -o "$t" bash -o pipefail -c '"$@" | zstd -q -3 -T2 > '"$out" _ "${DUMP[@]}" ;;
    "backup-container -1 (gzip)")
      BACKUP_CONF="$WORK/backup.conf" BACKUP_DIR="$WORK/backups" LOCALHOST_USER=bench LOCALHOST_PASSWORD=bench-pw \
        /usr/bin/time -f "%e %U %S %M" -o "$t" "$BIN" -1 2>"$WORK/log"
      # Our own peak RSS (the time figure includes pg_dump, a child).
      own=$(grep -o 'peak_rss_kb[^0-9]*[0-9]*' "$WORK/log" | grep -o '[0-9]*$' | tail -n 1)
      out=$(find "$WORK/backups" -name '*.sql.gz' | head -n 1) ;;
  esac
  read -r w u s m < "$t"
  local bytes=0
  [ -f "$out" ] && bytes=$(stat -c %s "$out")
  [ "$name" = "pg_dump > /dev/null" ] && bytes=$("${DUMP[@]}" | wc -c)
  [ "$name" = "backup-container -1 (gzip)" ] && m="$own"
  echo "$w $(echo "$u + $s" | bc) $m $bytes" >> "$WORK/$(echo "$name" | tr -c 'a-zA-Z0-9' _).results"
}

for ((round = 0; round < RUNS; round++)); do
  n=${#names[@]}
  for ((i = 0; i < n; i++)); do
    run "${names[$(( (i + round) % n ))]}"
  done
  echo "round $((round + 1))/$RUNS done" >&2
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$(echo "$1" | tr -c 'a-zA-Z0-9' _).results" | median; }

raw_wall=$(col "pg_dump > /dev/null" 1)
raw_bytes=$(col "pg_dump > /dev/null" 4)
gzip_wall=$(col "pg_dump | gzip -6" 1)
gzip_bytes=$(col "pg_dump | gzip -6" 4)
printf '\nData set: plain dump %.0f MB; %s rounds, medians; machine: %s cores\n\n' "$(echo "$raw_bytes/1000000" | bc -l)" "$RUNS" "$(nproc)"
printf '| %-28s | %8s | %8s | %9s | %9s | %13s | %12s | %11s |\n' command "wall s" "cpu s" "peak RSS" "output MB" "x pg_dump wall" "gzip-6 / this" "size vs gz-6"
printf '|%s|\n' "------------------------------|----------|----------|-----------|-----------|----------------|---------------|-------------"
for name in "${names[@]}"; do
  w=$(col "$name" 1); c=$(col "$name" 2); m=$(col "$name" 3); b=$(col "$name" 4)
  printf '| %-28s | %8.2f | %8.2f | %6.1f MB | %9.1f | %14.2f | %13.2f | %11s |\n' "$name" "$w" "$c" "$(echo "$m/1024" | bc -l)" \
    "$(echo "$b/1000000" | bc -l)" "$(echo "$w/$raw_wall" | bc -l)" "$(echo "$gzip_wall/$w" | bc -l)" \
    "$( [ "$name" = "pg_dump > /dev/null" ] && echo - || printf '%+.1f%%' "$(echo "($b-$gzip_bytes)*100/$gzip_bytes" | bc -l)")"
done
echo
echo "peak RSS of backup-container is its own (getrusage); the others are the pipeline's largest process."
