#!/bin/sh
# OpenShift runs the container as an arbitrary UID in group 0. initdb and the PostgreSQL
# server refuse a user without a passwd entry, so add one when it is missing (the image makes
# /etc/passwd group-writable for this), then run the command.
if ! whoami >/dev/null 2>&1 && [ -w /etc/passwd ]; then
  echo "backup:x:$(id -u):0:backup-container user:${HOME:-/tmp}:/usr/sbin/nologin" >> /etc/passwd
fi
exec "$@"
