#!/usr/bin/env bash
# Many small databases on one throwaway server, backed up by one `-1` run: one at a time (the
# default) against BACKUP_JOBS=4 (BACKUP_JOBS_PER_HOST=4), RUNS interleaved rounds, medians;
# then `-v all` of them (one verification server for the run), VERIFY_JOBS=1 against
# VERIFY_JOBS=4. PREV_BIN=<an older build> adds that build's sequential backup and `-v all`,
# in the same interleaved rounds, for comparison.
#   N=100 RUNS=3 scripts/bench-many.sh       (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh
N=${N:-100}
RUNS=${RUNS:-3}
BIN="${BIN:-target/release/backup-container}"
[ -x "$BIN" ] || cargo build --release --quiet
W=$(mktemp -d); chmod 755 "$W"
trap 'pg_stop; rm -rf "$W"' EXIT
pg_start "$W/pg"
for i in $(seq 1 "$N"); do
  echo "CREATE DATABASE d$i;"
done | pg_admin -d postgres >/dev/null
for i in $(seq 1 "$N"); do
  echo "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;" | pg_admin -d "d$i" >/dev/null
done
echo "localhost:$PGPORT_T/*" > "$W/backup.conf"
export BACKUP_CONF="$W/backup.conf" LOCALHOST_USER=postgres LOCALHOST_PASSWORD=admin-secret BACKUP_EXCLUDE_DATABASES=postgres STARTUP_CHECK=false
one() { # $1: jobs, $2: binary
  rm -rf "$W/backups"
  local s; s=$(date +%s.%N)
  BACKUP_DIR="$W/backups" BACKUP_JOBS="$1" BACKUP_JOBS_PER_HOST="$1" "${2:-$BIN}" -1 >/dev/null 2>"$W/log" \
    || { grep -E "ERROR|error" "$W/log" | head -5 >&2; exit 1; }
  echo "$(date +%s.%N) - $s" | bc
}
for ((r = 0; r < RUNS; r++)); do
  [ -z "${PREV_BIN:-}" ] || one 1 "$PREV_BIN" >> "$W/prev_jobs1"
  for jobs in 1 4; do one "$jobs" >> "$W/jobs$jobs"; done
done
mkdir -p "$W/verify" && chmod 777 "$W/verify"
verify_all() { # $1: binary, $2: VERIFY_JOBS
  local s; s=$(date +%s.%N)
  BACKUP_DIR="$W/backups" VERIFY_DIR="$W/verify" VERIFY_MAX_AGE=0 VERIFY_JOBS="${2:-1}" "$1" -v all >/dev/null 2>"$W/log" \
    || { grep -E "ERROR|error" "$W/log" | head -5 >&2; exit 1; }
  echo "$(date +%s.%N) - $s" | bc
}
for ((r = 0; r < RUNS; r++)); do
  verify_all "$BIN" 1 >> "$W/verify_now"
  verify_all "$BIN" 4 >> "$W/verify_jobs4"
  [ -z "${PREV_BIN:-}" ] || verify_all "$PREV_BIN" >> "$W/verify_prev"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
seq1=$(median < "$W/jobs1"); par4=$(median < "$W/jobs4")
printf '%s databases, %s rounds: one at a time %.2f s (%.0f ms each), BACKUP_JOBS=4 %.2f s (%.2f x)\n' \
  "$N" "$RUNS" "$seq1" "$(echo "$seq1 * 1000 / $N" | bc -l)" "$par4" "$(echo "$par4 / $seq1" | bc -l)"
if [ -n "${PREV_BIN:-}" ]; then
  prev1=$(median < "$W/prev_jobs1")
  printf '%s one at a time: %.2f s; BACKUP_JOBS=4 now %.2f x of that\n' "$PREV_BIN" "$prev1" "$(echo "$par4 / $prev1" | bc -l)"
fi
v=$(median < "$W/verify_now")
printf -- '-v all of %s databases: %.2f s (%.2f s each)\n' "$N" "$v" "$(echo "$v / $N" | bc -l)"
v4=$(median < "$W/verify_jobs4")
printf -- '-v all with VERIFY_JOBS=4: %.2f s (%.2f s each, %.2f x of one at a time)\n' "$v4" "$(echo "$v4 / $N" | bc -l)" "$(echo "$v4 / $v" | bc -l)"
if [ -n "${PREV_BIN:-}" ]; then
  p=$(median < "$W/verify_prev")
  printf -- '-v all with %s: %.2f s (%.2f s each); now %.2f x of that\n' "$PREV_BIN" "$p" "$(echo "$p / $N" | bc -l)" "$(echo "$v / $p" | bc -l)"
fi
