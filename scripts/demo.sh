#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL with sample data, one backup cycle, the listing, a
# verification, and a restore into a new database with row counts compared. Everything is
# removed at the end.
# Usage: make demo   (or scripts/demo.sh after scripts/install-deps.sh postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pg-throwaway.sh
. scripts/pg-throwaway.sh

BIN="${BIN:-target/debug/backup-container}"
[ -x "$BIN" ] || cargo build --quiet
WORK="$(mktemp -d /tmp/backup-demo.XXXXXX)"
chmod 755 "$WORK"
cleanup() { pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting a throwaway PostgreSQL"
pg_start "$WORK/pg"
echo "PostgreSQL on 127.0.0.1:$PGPORT_T"
pg_admin -d postgres -c "CREATE ROLE demo LOGIN PASSWORD 'demo-password'" -c "CREATE DATABASE shop OWNER demo"
pg_admin -d shop <<'SQL'
SET ROLE demo;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, joined date);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id), placed timestamptz, total numeric(10,2), items jsonb);
INSERT INTO customers (name, email, joined)
  SELECT 'Customer ' || g, 'c' || g || '@example.com', date '2020-01-01' + g % 1500 FROM generate_series(1, 20000) g;
INSERT INTO orders (customer, placed, total, items)
  SELECT 1 + g % 20000, timestamptz '2024-01-01' + g * interval '7 minutes', (g % 500) + 0.99,
         jsonb_build_array(jsonb_build_object('sku', 'SKU-' || g % 97, 'qty', 1 + g % 5))
  FROM generate_series(1, 100000) g;
SQL

cat > "$WORK/backup.conf" <<CONF
# demo backup.conf
postgres=localhost:$PGPORT_T/shop
CONF
export BACKUP_CONF="$WORK/backup.conf" BACKUP_DIR="$WORK/backups" TZ="${TZ:-America/Vancouver}"
export LOCALHOST_USER=demo LOCALHOST_PASSWORD=demo-password

step "backup-container -c   (effective settings, secrets redacted)"
"$BIN" -c

step "backup-container -1   (one backup run)"
"$BIN" -1

step "backup-container -l   (the backups on disk)"
"$BIN" -l

step "backup-container -v all   (restore into a throwaway server and check it)"
mkdir -p "$WORK/verify" && chmod 777 "$WORK/verify"
VERIFY_DIR="$WORK/verify" "$BIN" -v all

step "backup-container -l   (the verification is recorded)"
"$BIN" -l

step "backup-container -r localhost:$PGPORT_T/shop_restored -f localhost-shop -s   (restore under a new name)"
BACKUP_ADMIN_PASSWORD=admin-secret "$BIN" -r "localhost:$PGPORT_T/shop_restored" -f localhost-shop -s

step "Row counts: original and restored"
counts() { pg_admin -d "$1" -c "SELECT (SELECT count(*) FROM customers) || ' customers, ' || (SELECT count(*) FROM orders) || ' orders'"; }
orig="$(counts shop)"; restored="$(counts shop_restored)"
echo "original: $orig"
echo "restored: $restored"
[ "$orig" = "$restored" ] || { echo "MISMATCH" >&2; exit 1; }
step "Demo complete: backed up, listed, verified, restored under a new name with equal row counts"
