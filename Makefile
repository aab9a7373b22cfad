# Two commands for a newcomer on a fresh machine: `make demo` and `make test`.
# Both install what they need (PostgreSQL via apt when missing).
.PHONY: demo test lint bench soak deps screenshots

# What the test suite needs: PostgreSQL, node, pyftpdlib, s3s-fs, linters.
deps:
	scripts/install-deps.sh postgres pgmajors mariadb node ftps s3 lint promtool age moto chromium

# The demo needs only PostgreSQL.
demo:
	scripts/install-deps.sh postgres
	cargo build --quiet
	scripts/demo.sh

# Every server-backed test must run: BACKUP_TEST_REQUIRE=all turns a skip into a failure.
test: deps
	BACKUP_TEST_REQUIRE=all cargo test --all-targets
	node --test scripts/
	scripts/lint-deploy.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Benchmark (prints a table; results go in docs/PERFORMANCE.md). SIZE_MB and RUNS tune it.
bench:
	scripts/install-deps.sh postgres pigz zstd time bc age
	cargo build --release --quiet
	scripts/bench.sh
	scripts/bench-pitr.sh
	scripts/bench-counts.sh

# Daemon memory soak: RUNS backups one second apart; prints RSS early and late.
soak:
	scripts/install-deps.sh postgres
	cargo build --release --quiet
	scripts/soak.sh

# Refreshes docs/status-desktop.png and docs/status-phone.png (README shows them) from a real
# daemon in headless Chromium; the test itself only writes into a temporary folder.
screenshots:
	scripts/install-deps.sh postgres chromium
	STATUS_SCREENSHOTS=$(CURDIR)/docs BACKUP_TEST_REQUIRE=chromium cargo test --test integration -- status_page::the_page_fits_a_phone_in_chromium
