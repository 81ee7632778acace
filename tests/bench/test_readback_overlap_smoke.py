"""bench/readback_overlap.py must not rot (issue #11, branch ``full5``): a tiny source, one round of
each variant, each run's line and the medians printed (speed is never asserted); no run's set is
deleted before the last run ended (bench/trash.py)."""

from __future__ import annotations

import os
import re

from tests.bench.kept import deleted_between, run_watched


def test_readback_overlap_times_each_variant(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(40):
        (src / "d" / f"f{i}.txt").write_bytes(os.urandom(i * 50))
    work = tmp_path / "work"
    proc, events = run_watched(tmp_path, work, 1, "subprocess:run", "readback_overlap.py", src, work,
                               "--rounds", "1", "--variants", "on,off,every=0")
    assert len(events) == 6 and deleted_between(events, 1) == [], events   # (the old script deleted each set)
    for variant in ("on", "off", "every=0"):
        assert re.search(rf"^{re.escape(variant)} +0 +[\d.]+ +[\d.]+ .* 40 +0 ", proc.stdout, re.M), (variant, proc.stdout)
        assert re.search(rf"^  {re.escape(variant)} +[\d.]+ ", proc.stdout, re.M), proc.stdout
    assert sorted(os.listdir(work)) == ["home"]
