#!/bin/sh
# Compatibility shim: existing cron lines, docs and habits call /backup.sh (or ./backup.sh
# from /). It runs the Rust binary with the same arguments.
exec "${BACKUP_CONTAINER_BIN:-/usr/local/bin/backup-container}" "$@"
