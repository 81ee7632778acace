"""A small file's content read in one call when it is exactly the size the manifest says
(core/engine/restore_file.py ``Opened.blocks``, the reads-ahead restore; issue #11): a content file
of another size or other bytes is still reported damaged and never put in place."""

from __future__ import annotations

import pytest

from core.engine import restore_ahead
from tests.support.engine import backed_up_tree, restore_path
from tests.support.trees import read_tree

pytestmark = pytest.mark.skipif(not restore_ahead.READS_AHEAD, reason="reads are started ahead on Linux only")

TREE = {f"d{i}/f{j}.txt": f"file {i}.{j} ".encode() * (j + 1) for i in range(4) for j in range(5)}
TREE.update({"empty.txt": b"", "top.txt": b"at the top"})


@pytest.fixture
def backed_up(tmp_path):
    return backed_up_tree(tmp_path, TREE)


def test_a_tree_of_small_files_is_restored_byte_for_byte(backed_up, tmp_path):
    src, set_path = backed_up
    result = restore_path(set_path, tmp_path / "out")
    assert result.files_restored == len(TREE) and not result.damaged
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    assert [p.name for p in (tmp_path / "out").rglob(".plugback-restore-*")] == []


@pytest.mark.parametrize("content", [b"file 1.2 file 1.2 file 1.2 !", b"file 1.2 file 1.2 ", b"",
                                     b"file 1.2 file 1.2 file 1.3 "], ids=["longer", "shorter", "empty", "same size"])
def test_a_small_content_file_of_another_size_or_bytes_is_damaged(backed_up, tmp_path, content):
    """Read in one call when it is exactly the recorded size: a longer one fills the read past it."""
    _, set_path = backed_up
    assert TREE["d1/f2.txt"] == b"file 1.2 " * 3
    (set_path / "Latest" / "Docs" / "d1" / "f2.txt").write_bytes(content)
    result = restore_path(set_path, tmp_path / "out")
    assert [p for p, _ in result.damaged] == ["Docs/d1/f2.txt"]
    assert "does not match its checksum" in result.damaged[0][1]
    assert not (tmp_path / "out" / "Docs" / "d1" / "f2.txt").exists()
    assert (tmp_path / "out" / "Docs" / "d1" / "f1.txt").read_bytes() == TREE["d1/f1.txt"]
    assert [p.name for p in (tmp_path / "out").rglob(".plugback-restore-*")] == []
