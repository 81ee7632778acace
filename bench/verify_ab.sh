#!/bin/sh
# verify --read-all of one plain set, cold and interleaved: restic check --read-data, then each
# checkout's plugback (python -P -m core.cli with PYTHONPATH=CHECKOUT), the page cache dropped
# before every command; per line: round, command, wall s, user s, sys s (the command and its
# children: GNU time), peak RSS of its largest process (KB), exit status, then the 1-minute load. Root only.
#
#   flock /tmp/pb/bench.lock nice -n 5 sh bench/verify_ab.sh SET HOME RESTIC_REPO RESTIC_PASSWORD CHECKOUT...
#
# HOME is plugback's PLUGBACK_HOME (where its backups recorded the manifests they wrote).
# ROUNDS (default 3) and PYTHON (default python3) from the environment; QUICK=1 times the quick
# checks instead: restic check (no --read-data) and plugback verify (no --read-all).
set -e
SET=$1 HOME_DIR=$2 REPO=$3 PASS=$4
shift 4
export PLUGBACK_HOME="$HOME_DIR" RESTIC_REPOSITORY="$REPO" RESTIC_PASSWORD="$PASS" RESTIC_CACHE_DIR="$REPO-cache"
PY=${PYTHON:-python3}
round=1
while [ "$round" -le "${ROUNDS:-3}" ]; do
  for what in restic "$@"; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    if [ "$what" = restic ]; then
      cmd="restic check"
      [ -n "$QUICK" ] || cmd="$cmd --read-data"
    else
      cmd="env PYTHONPATH='$what' '$PY' -P -m core.cli verify '$SET'"
      [ -n "$QUICK" ] || cmd="$cmd --read-all"
    fi
    /usr/bin/time -f "$round $what %e s wall %U user %S sys %M KB rc %x" sh -c "$cmd > /dev/null 2>&1" 2>&1 | tail -1 | tr '\n' ' '
    cut -d' ' -f1 /proc/loadavg
  done
  round=$((round + 1))
done
