#!/bin/bash
# Cold restores of one plain set, interleaved in each round: each checkout's plugback restore
# (python -P -m core.cli with PYTHONPATH=CHECKOUT), restic's and borg's restore of the same source,
# and `cp -a` of the source; the page cache dropped before every command. Per line: the name, wall s,
# user s, sys s (the command and its children: GNU time), peak RSS of its largest process (KB), the
# 1-minute load when it started. Root only.
#
#   flock /tmp/pb/bench.lock nice -n 5 bench/restore_ab.sh WORKDIR ROUNDS NAME=CHECKOUT...
#
# WORKDIR holds src/ (bench/make_dataset.py), set/ (plugback backup src --to set), restic/ (a
# restic repository of src, password "bench"), borg/ (borg init -e none; borg create ::a1 src), and
# out/ is made and removed there. PYTHON (default python3) from the environment.
cd "$1" || exit 1
ROUNDS=$2
shift 2
PY=${PYTHON:-python3}
cold() { rm -rf out; sync; echo 3 > /proc/sys/vm/drop_caches; }
t() {
  local name=$1 load
  shift
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -o out.time -f '%e %U %S %M' "$@" > /dev/null 2> out.err || { echo "FAIL $name"; cat out.err; }
  echo "$name $(cat out.time) load=$load"
  rm -f out.time out.err
}
for i in $(seq 1 "$ROUNDS"); do
  echo "round $i $(date -u +%T)"
  for nc in "$@"; do
    cold; t "${nc%%=*}" env PYTHONPATH="${nc#*=}" "$PY" -P -m core.cli restore set out
  done
  cold; mkdir out; t restic env RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$PWD/restic-cache" restic -q -r restic restore latest --target out
  cold; mkdir out; t borg sh -c "cd out && BORG_REPO='$PWD/borg' BORG_BASE_DIR='$PWD/borg-base' BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes borg extract ::a1"
  cold; t cp cp -a src out
done
rm -rf out
