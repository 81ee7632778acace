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
# restic repository of src, password "bench"), borg/ (borg init -e none; borg create ::a1 src).
# Each command restores into out/; nothing is deleted between timed commands (ext4 without a
# journal: files created right after a big deletion cost more, bench/trash.py): each restored
# tree is moved into WORKDIR/trash and they are all deleted after the last round. Before the
# first command the script waits until the last big deletion noted on WORKDIR's file system is
# SETTLE seconds old (default 370; 0: do not wait; bench/trash.py). PYTHON (default python3) and
# SETTLE from the environment; KEEP_TRASH=1 leaves trash/ for the next run (runs back to back on the
# same file system, none waiting out the other's deletion; the last run without it deletes it all).
BENCH=$(cd "$(dirname "$0")" && pwd)
cd "$1" || exit 1
ROUNDS=$2
shift 2
PY=${PYTHON:-python3}
# bench/trash.py's Trash, Python's own (-P: nothing from WORKDIR); deleted: how many entries.
trash() { PYTHONPATH="$BENCH" "$PY" -P -c "import sys, trash; from pathlib import Path; $1" "$PWD" "${@:2}"; }
trash "trash.settle(Path(sys.argv[1]), float(sys.argv[2]), lambda m: print(m, file=sys.stderr, flush=True), source=Path('src'))" \
  "${SETTLE:-370}"
N=0
cold() { if [ -e out ]; then N=$((N + 1)); mkdir -p trash; mv out "trash/out-$N"; fi; sync; echo 3 > /proc/sys/vm/drop_caches; }
t() {
  local name=$1 load
  shift
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -o out.time -f '%e %U %S %M' "$@" > /dev/null 2> out.err || { echo "FAIL $name"; cat out.err; }
  echo "$name $(cat out.time) load=$load"
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
cold
rm -f out.time out.err
if [ -n "$KEEP_TRASH" ]; then echo "kept trash/ (KEEP_TRASH): delete it after the last run"; exit 0; fi
echo "deleted $(trash "print(trash.Trash(Path(sys.argv[1]) / 'trash').empty())") entries after the last round"
