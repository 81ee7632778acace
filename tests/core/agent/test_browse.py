"""core/agent/browse.py: the exclude preview the Jobs page shows, on real folders."""

import os

from core.agent.browse import exclude_preview
from tests.support.trees import make_tree


def test_exclude_preview_lists_what_is_left_out(tmp_path):
    src = make_tree(tmp_path / "S", {"a.tmp": b"", "b.txt": b"", "node_modules/x/y.js": b"", ".DS_Store": b"",
                                     "sub/c.tmp": b"", "sub/d.txt": b""})
    preview = exclude_preview([str(src)], ["*.tmp", "node_modules/"])
    # An excluded folder is one line (nothing below it is looked at); the defaults count too.
    assert preview == {"excluded": [str(src / "node_modules") + os.sep, str(src / ".DS_Store"), str(src / "a.tmp"),
                                    str(src / "sub" / "c.tmp")],
                       "count": 4}
    assert exclude_preview([str(src)], ["nothing-matches"]) == {"excluded": [str(src / ".DS_Store")], "count": 1}


def test_exclude_preview_skips_missing_sources(tmp_path):
    assert exclude_preview([str(tmp_path / "gone")], ["*"]) == {"excluded": [], "count": 0}
