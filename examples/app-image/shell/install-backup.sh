#!/bin/sh
# Installs the nightly etcd backup CronJob; the schedule comes from the first argument pair.
set -eu
schedule="0 3 * * *"
if [ "${1:-}" = "--schedule" ]; then schedule="$2"; fi
sed "s|@SCHEDULE@|$schedule|; s|@RETENTION@|${RETENTION_DAYS:-7}|" backup.yaml | kubectl apply -f -
