"""bench/winscan_parse.py must not rot: one tiny round (speed is never asserted here)."""

from __future__ import annotations

from bench import winscan_parse


def test_the_parse_bench_times_every_class_and_scandir(tmp_path, capsys):
    results = winscan_parse.main(["--entries", "12", "--rounds", "1", "--workdir", str(tmp_path / "parse")])
    assert len(results) == 4 and all(us > 0 for us in results.values())
    assert "FileIdExtdDirectoryInfo" in capsys.readouterr().out
