"""Windows file-system names (issue #16): the rule table, and a set made on Linux restored where
those names cannot exist — on a simulated Windows target (``names=WINDOWS``) and on a real exFAT
drive, where the rules are found out from the target itself."""

from __future__ import annotations

import pytest

from core.engine.names import WINDOWS, escape_component, windows_problem
from core.engine.progress import WarningCode
from core.engine.restore_names import target_rules
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree, read_tree


@pytest.mark.parametrize("name,problem", [
    ("plain.txt", None),
    ("CON", "device name"),
    ("con", "device name"),
    ("Con.txt", "device name"),
    ("NUL.tar.gz", "device name"),
    ("NUL .txt", "device name"),        # Windows ignores spaces before the extension
    ("PRN", "device name"),
    ("AUX.h", "device name"),
    ("COM1", "device name"),
    ("com9.log", "device name"),
    ("LPT1", "device name"),
    ("LPT¹", "device name"),
    ("CONIN$", "device name"),
    ("conout$.txt", "device name"),
    ("COM10", None),
    ("CONSOLE", None),
    ("NULL", None),
    ("xCON", None),
    ("a:b", "character ':'"),
    ("a<b", "character '<'"),
    ("a>b", "character '>'"),
    ('a"b', "character '\"'"),
    ("a\\b", "character '\\\\'"),
    ("a|b", "character '|'"),
    ("a?b", "character '?'"),
    ("a*b", "character '*'"),
    ("a\x01b", "character"),
    ("a\tb", "character"),
    ("notes.", "dot or a space"),
    ("notes ", "dot or a space"),
    ("...", "dot or a space"),
    (" leading", None),
    (".hidden", None),
    ("Résumé 日本.txt", None),
    ("", "not a name"),
    (".", "not a name"),
    ("..", "not a name"),
])
def test_windows_rules(name, problem):
    found = windows_problem(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
    if name not in ("", ".", ".."):   # (never names in a snapshot: manifests refuse them)
        # Whatever the problem, the escaped name has none.
        assert windows_problem(escape_component(name, WINDOWS)) is None


@pytest.mark.parametrize("name,expected", [
    ("NUL .txt", "_NUL .txt"), ("CONIN$", "_CONIN$"), ("conout$.txt", "_conout$.txt"),
    ("CON ", "_CON%20"),
])
def test_new_windows_escapes(name, expected):
    assert escape_component(name, WINDOWS) == expected


LINUX_NAMES = {
    "a:b.txt": b"colon",
    "CON": b"device",
    "nul.txt": b"device with extension",
    "notes.": b"trailing dot",
    "notes ": b"trailing space",
    "what?.txt": b"question",
    "README": b"upper",
    "Readme": b"mixed",
    "ok.txt": b"fine",
    "Dir/x.txt": b"in Dir",
    "DIR/y.txt": b"in DIR",
    "we:ird/AUX/deep.txt": b"under two renamed folders",
}
# What a Windows target holds: escaped names, and case-only pairs numbered (second in sort order).
ON_WINDOWS = {
    "a%3Ab.txt": b"colon",
    "_CON": b"device",
    "_nul.txt": b"device with extension",
    "notes%2E": b"trailing dot",
    "notes%20": b"trailing space",
    "what%3F.txt": b"question",
    "README": b"upper",
    "Readme~1": b"mixed",
    "ok.txt": b"fine",
    "DIR/y.txt": b"in DIR",
    "Dir~1/x.txt": b"in Dir",
    "we%3Aird/_AUX/deep.txt": b"under two renamed folders",
}
RENAMED = {"Docs/a:b.txt", "Docs/CON", "Docs/nul.txt", "Docs/notes.", "Docs/notes ", "Docs/what?.txt",
           "Docs/Readme", "Docs/Dir", "Docs/we:ird", "Docs/we:ird/AUX"}


def _renamed(result) -> set[str]:
    assert all(w.code is WarningCode.RENAMED for w in result.warnings), result.warnings
    return {w.path for w in result.warnings}


def test_linux_set_restored_with_windows_rules(tmp_path):
    src = make_tree(tmp_path / "Docs", LINUX_NAMES)
    backup_path(tmp_path / "set", [src])
    out = tmp_path / "out"
    r = restore_path(tmp_path / "set", out, names=WINDOWS)
    assert read_tree(out / "Docs") == ON_WINDOWS
    assert r.files_restored == len(LINUX_NAMES) and r.skipped == 0 and not r.damaged
    assert _renamed(r) == RENAMED
    w = next(w for w in r.warnings if w.path == "Docs/a:b.txt")
    assert w.to_dict()["code"] == "renamed" and "'a%3Ab.txt'" in w.message and "'a:b.txt'" in w.message

    # Again, over what is there: every name maps the same way, so each file meets itself.
    again = restore_path(tmp_path / "set", out, names=WINDOWS, on_conflict="overwrite")
    assert again.overwritten == len(LINUX_NAMES) and read_tree(out / "Docs") == ON_WINDOWS


def test_without_windows_rules_every_name_is_kept(tmp_path):
    src = make_tree(tmp_path / "Docs", LINUX_NAMES)
    backup_path(tmp_path / "set", [src])
    r = restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == LINUX_NAMES and r.warnings == []
    assert target_rules(str(tmp_path)) is None   # this machine's temp folder: any name


def test_subset_below_renamed_folders(tmp_path):
    src = make_tree(tmp_path / "Docs", LINUX_NAMES)
    backup_path(tmp_path / "set", [src])
    out = tmp_path / "out"
    r = restore_path(tmp_path / "set", out, names=WINDOWS, paths=["Docs/we:ird/AUX"])
    assert read_tree(out) == {"Docs/we%3Aird/_AUX/deep.txt": b"under two renamed folders"}
    assert _renamed(r) == {"Docs/we:ird/AUX"}   # the folder above is not an entry of this restore


def test_case_only_pairs_in_different_folders_do_not_collide(tmp_path):
    tree = {"a/File": b"1", "a/file": b"2", "b/FILE": b"3", "b/sub/x": b"4", "c/file": b"5"}
    src = make_tree(tmp_path / "Docs", tree)
    backup_path(tmp_path / "set", [src])
    r = restore_path(tmp_path / "set", tmp_path / "out", names=WINDOWS)
    assert read_tree(tmp_path / "out" / "Docs") == {"a/File": b"1", "a/file~1": b"2", "b/FILE": b"3",
                                                    "b/sub/x": b"4", "c/file": b"5"}
    assert _renamed(r) == {"Docs/a/file"}


def test_a_restored_linux_set_on_exfat_renames_instead_of_failing(exfat_drive, tmp_path):
    """exFAT (FUSE) refuses these names for real; the rules are found from the target's file system."""
    src = make_tree(tmp_path / "Docs", LINUX_NAMES)
    backup_path(tmp_path / "set", [src])
    out = exfat_drive.mount_point / "restored"
    rules = target_rules(str(exfat_drive.mount_point))
    assert rules is not None and rules.windows_names and rules.case_insensitive
    r = restore_path(tmp_path / "set", out, workers=2)
    assert read_tree(out / "Docs") == ON_WINDOWS
    assert _renamed(r) == RENAMED and r.files_restored == len(LINUX_NAMES)


def test_the_namer_keeps_only_the_folders_it_is_inside():
    """Memory flat in the file count: names are kept per folder only while the restore is in it."""
    from core.engine.manifest import DIR, FILE, Entry
    from core.engine.restore_names import RestoreNamer

    namer = RestoreNamer({"Docs": "/unused"}, WINDOWS, warnings := [])
    names = []
    for i in range(500):
        names.append(namer.local(Entry(f"Docs/d{i:03}", DIR)).path)
        names.append(namer.local(Entry(f"Docs/d{i:03}/a:b", FILE)).path)
        names.append(namer.local(Entry(f"Docs/d{i:03}/A:B", FILE)).path)
        assert len(namer._used) <= 2 and len(namer._inside) <= 1
    assert names[:3] == ["Docs/d000", "Docs/d000/a%3Ab", "Docs/d000/A%3AB~1"]
    assert len(warnings) == 1000


def test_cli_restore_onto_exfat_names_the_renamed_files(exfat_drive, tmp_path):
    """The real `plugback restore` onto a real exFAT drive: it completes with warnings (exit 3) that
    name each renamed file, and everything is there under the name exFAT can hold."""
    from core.errors import EXIT_WARNINGS
    from tests.support.cli import run_cli

    src = make_tree(tmp_path / "Docs", {"a:b.txt": b"colon", "ok.txt": b"fine"})
    assert run_cli("backup", str(src), "--to", str(tmp_path / "set")).returncode == 0
    out = exfat_drive.mount_point / "restored"
    r = run_cli("restore", str(tmp_path / "set"), str(out))
    assert r.returncode == EXIT_WARNINGS, r.stdout + r.stderr
    assert "Docs/a:b.txt: restored as 'a%3Ab.txt'" in r.stderr
    assert read_tree(out / "Docs") == {"a%3Ab.txt": b"colon", "ok.txt": b"fine"}
