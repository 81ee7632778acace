"""Walking sources: excludes, defaults, the set inside a source, unreadable and special files,
top-level names of sources."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from core.engine.backup import BackupStatus
from core.engine.manifest import DIR, FILE, LINK, sort_key
from core.engine.progress import WarningCode
from core.engine.repo import BackupSet
from core.engine.scan import DEFAULT_EXCLUDES, DEFAULT_REGEX, Excluder, _one_regex, plan_sources, scan
from core.errors import SourceMissing, UsageError
from tests.support.cli import plugback_executable
from tests.support.engine import backup_path, restore_path
from tests.support.env import subprocess_env
from tests.support.trees import Symlink, make_tree, read_tree


def _scan(*folders, patterns=(), defaults=True, skip_dirs=()):
    warnings = []
    entries = list(scan(plan_sources(folders), Excluder(patterns, defaults, skip_dirs), warnings))
    return entries, warnings


def _paths(*folders, **kw) -> list[str]:
    return [e.path for e in _scan(*folders, **kw)[0]]


def test_scan_records_types_sorted_and_does_not_follow_links(tmp_path):
    src = make_tree(tmp_path / "Docs", {"b.txt": b"bb", "a/x.txt": b"x", "a-b/y": b"y", "empty/": None,
                                        "to-a": Symlink("a"), "outside": Symlink("/etc")})
    entries, warnings = _scan(src)
    assert warnings == []
    paths = [e.path for e in entries]
    assert paths == ["Docs", "Docs/a", "Docs/a/x.txt", "Docs/a-b", "Docs/a-b/y", "Docs/b.txt", "Docs/empty",
                     "Docs/outside", "Docs/to-a"]
    assert paths == sorted(paths, key=sort_key)     # the manifest's order, folder before contents
    kinds = {e.path: (e.type, e.size, e.target) for e in entries}
    assert kinds["Docs/b.txt"] == (FILE, 2, None)
    assert kinds["Docs/a"] == (DIR, 0, None)
    assert kinds["Docs/to-a"] == (LINK, 0, "a") and kinds["Docs/outside"] == (LINK, 0, "/etc")
    st = os.lstat(src / "b.txt")
    e = next(e for e in entries if e.path == "Docs/b.txt")
    assert (e.mtime_ns, e.ino, e.ctime_ns, e.abspath) == (st.st_mtime_ns, st.st_ino, st.st_ctime_ns,
                                                          str(src / "b.txt"))


TREE = {
    "a.tmp": b"", "keep.tmp": b"", "sub/b.tmp": b"", "sub/keep.tmp": b"", "doc.txt": b"",
    "node_modules/x/index.js": b"", "app/node_modules/y.js": b"", "node_modules.txt": b"",
    "top-only/t.txt": b"", "sub/top-only/u.txt": b"", "Photos/raw/1.cr2": b"", "Photos/jpg/1.jpg": b"",
}


@pytest.mark.parametrize("patterns,gone", [
    (["*.tmp"], {"a.tmp", "keep.tmp", "sub/b.tmp", "sub/keep.tmp"}),
    (["*.tmp", "!keep.tmp"], {"a.tmp", "sub/b.tmp"}),
    (["node_modules/"], {"node_modules", "node_modules/x", "node_modules/x/index.js", "app/node_modules",
                         "app/node_modules/y.js"}),
    (["/top-only"], {"top-only", "top-only/t.txt"}),
    (["top-only/"], {"top-only", "top-only/t.txt", "sub/top-only", "sub/top-only/u.txt"}),
    (["/Photos/raw"], {"Photos/raw", "Photos/raw/1.cr2"}),
    (["Photos/**/*.jpg"], {"Photos/jpg/1.jpg"}),
    (["sub/"], {"sub", "sub/b.tmp", "sub/keep.tmp", "sub/top-only", "sub/top-only/u.txt"}),
    (["  ", ""], set()),                                    # blank lines mean nothing
    (["# a comment"], set()),
])
def test_gitignore_style_excludes(tmp_path, patterns, gone):
    src = make_tree(tmp_path / "S", TREE)
    everything = set(_paths(src))
    kept = set(_paths(src, patterns=patterns))
    assert {p.removeprefix("S/") for p in everything - kept} == gone


def test_excludes_are_relative_to_each_source(tmp_path):
    a = make_tree(tmp_path / "A", {"top-only/x": b"", "y/top-only/z": b""})
    b = make_tree(tmp_path / "B", {"top-only/x": b""})
    assert _paths(a, b, patterns=["/top-only"]) == ["A", "A/y", "A/y/top-only", "A/y/top-only/z", "B"]


def test_negation_cannot_reach_into_an_excluded_folder(tmp_path):
    # git's rule: a file inside an excluded folder cannot be re-included (the folder is never read).
    src = make_tree(tmp_path / "S", {"build/keep.txt": b"", "build/junk.o": b""})
    assert _paths(src, patterns=["build/", "!build/keep.txt"]) == ["S"]


def test_default_excludes(tmp_path):
    src = make_tree(tmp_path / "S", {
        ".DS_Store": b"", "sub/.DS_Store": b"", "Thumbs.db": b"", "desktop.ini": b"", "._resource": b"",
        "__pycache__/m.cpython-311.pyc": b"", "pkg/__pycache__/n.pyc": b"", ".cache/pip/x": b"",
        "~$report.docx": b"", ".~lock.sheet.ods#": b"", "$RECYCLE.BIN/x": b"", ".Trash-1000/files/y": b"",
        "keep/me.txt": b"", "pkg/mod.py": b"", "__pycache__.txt": b"", "Thumbs.db.txt": b"",
    })
    assert _paths(src) == ["S", "S/Thumbs.db.txt", "S/__pycache__.txt", "S/keep", "S/keep/me.txt", "S/pkg",
                           "S/pkg/mod.py", "S/sub"]
    # Without defaults everything is there.
    assert len(_paths(src, defaults=False)) == 27


@pytest.mark.parametrize("patterns", [(), ("*.tmp", "/Photos/raw", "node_modules/", "build/**/x", "a?c", "[ab]*.log",
                                      "**/deep/*.o", "x\\ y", "# a comment", "")])
def test_one_regex_excludes_exactly_what_pathspec_excludes(patterns):
    """The combined regex (no negations) agrees with pathspec's own matching on every path."""
    import random

    import pathspec

    ex = Excluder(patterns)
    assert ex._any is not None   # the fast path is the one under test
    spec = pathspec.GitIgnoreSpec.from_lines(list(DEFAULT_EXCLUDES) + [p for p in patterns if p.strip()])
    names = [".DS_Store", "._x", "Thumbs.db", "desktop.ini", "~$a", ".~lock.f#", "__pycache__", ".cache",
             "a.tmp", "Photos", "raw", "node_modules", "build", "x", "deep", "q.o", "abc", "a.log", "c.log",
             ".Trash-1000", "$RECYCLE.BIN", "System Volume Information", "file", "x y", "ab\\c", "é"]
    rnd = random.Random(7)
    for _ in range(5000):
        rel = "/".join(rnd.choice(names) for _ in range(rnd.randint(1, 4)))
        for is_dir in (True, False):
            assert ex.excluded(rel, is_dir) == spec.match_file(rel + "/" if is_dir else rel), (rel, is_dir)


def test_the_default_excludes_regex_is_pathspecs_translation():
    """scan.DEFAULT_REGEX (used without loading pathspec when a run has no excludes of its own) is what
    the joined translation of DEFAULT_EXCLUDES is; if pathspec translates differently now, paste this."""
    import pathspec

    assert Excluder()._any.pattern == DEFAULT_REGEX and Excluder().spec is None
    assert _one_regex(pathspec.GitIgnoreSpec.from_lines(DEFAULT_EXCLUDES)).pattern == DEFAULT_REGEX


def test_a_negation_keeps_pathspec_order():
    ex = Excluder(["*.log", "!keep.log"])
    assert ex._any is None
    assert ex.excluded("a.log", False) and not ex.excluded("keep.log", False)


def test_bad_pattern_is_a_usage_error():
    with pytest.raises(UsageError, match="gitignore-style"):
        Excluder(["a/**b/[z-a]"])


def test_the_set_inside_a_source_is_skipped(tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a", "Backups/other.txt": b"keep me"})
    set_path = src / "Backups" / "set"
    r1 = backup_path(set_path, [src])
    paths = [e.path for e in BackupSet.open(set_path).manifest(r1.snapshot_id).entries]
    assert paths == ["Docs", "Docs/Backups", "Docs/Backups/other.txt", "Docs/a.txt"]
    # The second run sees the set full of files and must still leave it out (no backup of backups).
    r2 = backup_path(set_path, [src])
    assert r2.files_scanned == 2 and r2.files_copied == 0
    restore_path(set_path, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == {"Backups/other.txt": b"keep me", "a.txt": b"a"}
    # Through a symlinked path too: the set is recognised by its real path.
    os.symlink(src, tmp_path / "via-link")
    assert "Docs/Backups/set" not in _paths(tmp_path / "via-link", skip_dirs=[str(set_path)])


def test_a_source_inside_the_set_is_refused(tmp_path):
    set_path = tmp_path / "set"
    make_tree(set_path / "Latest", {"x": b""})
    with pytest.raises(UsageError, match="inside the backup set"):
        backup_path(set_path, [set_path / "Latest"])


def test_special_files_warn_and_sockets_are_skipped(tmp_path):
    src = make_tree(tmp_path / "S", {"ok.txt": b"ok"})
    os.mkfifo(src / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(src / "sock"))
        entries, warnings = _scan(src)
    finally:
        sock.close()
    assert [e.path for e in entries] == ["S", "S/ok.txt"]
    assert [(w.path, w.message) for w in warnings] == [(str(src / "pipe"), "special file (device or pipe), skipped")]


def test_special_file_makes_a_backup_end_with_warnings(tmp_path):
    src = make_tree(tmp_path / "S", {"ok.txt": b"ok"})
    os.mkfifo(src / "pipe")
    r = backup_path(tmp_path / "set", [src])
    assert r.status is BackupStatus.WARNINGS and [w.path for w in r.warnings] == [str(src / "pipe")]
    assert [w.code for w in r.warnings] == [WarningCode.SPECIAL_FILE]
    assert r.files_scanned == 1


# --- unreadable folders and files ---------------------------------------------------------

def _without_root_powers(args: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``args`` unable to bypass file permissions. chmod 000 does not stop root: as root the
    child runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (setpriv), so permissions apply."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing: chmod 000 would not stop us")
        args = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *args]
    return subprocess.run(args, capture_output=True, text=True, env=subprocess_env(), timeout=120, **kw)


def _unreadable_tree(tmp_path):
    src = make_tree(tmp_path / "S", {"ok.txt": b"ok", "secret.txt": b"no", "locked/inner.txt": b"no",
                                     "later.txt": b"later"})
    os.chmod(src / "secret.txt", 0)
    os.chmod(src / "locked", 0)
    return src


def test_unreadable_folder_and_file_warn(tmp_path):
    src = _unreadable_tree(tmp_path)
    set_path = tmp_path / "set"
    code = textwrap.dedent(f"""
        import json
        from core.engine.repo import BackupSet
        from tests.support.engine import backup_path
        r = backup_path({str(set_path)!r}, [{str(src)!r}])
        m = BackupSet.open({str(set_path)!r}).manifest(r.snapshot_id)
        print(json.dumps({{"status": r.status, "warnings": [w.to_dict() for w in r.warnings],
                          "paths": [e.path for e in m.entries]}}))
    """)
    try:
        proc = _without_root_powers([sys.executable, "-c", code])
    finally:
        os.chmod(src / "locked", 0o755)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "warnings"
    by_path = {w["path"]: w["message"] for w in out["warnings"]}
    assert set(by_path) == {str(src / "locked"), str(src / "secret.txt")}
    assert {w["code"] for w in out["warnings"]} == {"unreadable"}
    assert "folder could not be read" in by_path[str(src / "locked")]
    assert "could not be read" in by_path[str(src / "secret.txt")] and "skipped" in by_path[str(src / "secret.txt")]
    # The rest is backed up; the unreadable file is not in the snapshot (the folder is, empty).
    assert out["paths"] == ["S", "S/later.txt", "S/locked", "S/ok.txt"]


def test_cli_unreadable_file_exits_with_warnings(tmp_path):
    src = _unreadable_tree(tmp_path)
    os.chmod(src / "locked", 0o755)
    proc = _without_root_powers([str(plugback_executable()), "backup", str(src), "--to", str(tmp_path / "set")])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "secret.txt" in proc.stderr and "Completed with 1 warning(s)" in proc.stderr


# --- source top-level names -----------------------------------------------------------------

def test_source_names_are_unique_and_stable(tmp_path):
    a, b, c = (tmp_path / x / "Docs" for x in "abc")
    for p in (a, b, c):
        p.mkdir(parents=True)
    first = plan_sources([a, b])
    assert [(s.path, s.name) for s in first] == [(str(a), "Docs"), (str(b), "Docs-2")]
    previous = [s.to_dict() for s in first]
    # Order of the job's list changes: names follow the folders, not the order.
    assert [(s.path, s.name) for s in plan_sources([b, a], previous)] == [(str(b), "Docs-2"), (str(a), "Docs")]
    # A new folder with the same name gets the next free one, the old ones keep theirs.
    assert [s.name for s in plan_sources([c, b, a], previous)] == ["Docs-3", "Docs-2", "Docs"]
    # The same folder twice is backed up once.
    assert [s.name for s in plan_sources([a, str(a) + "/"])] == ["Docs"]


def test_source_names_differ_case_insensitively(tmp_path):
    a, b = tmp_path / "a" / "docs", tmp_path / "b" / "Docs"
    a.mkdir(parents=True), b.mkdir(parents=True)
    assert [s.name for s in plan_sources([a, b])] == ["docs", "Docs-2"]


def test_missing_or_file_source_is_refused(tmp_path):
    with pytest.raises(SourceMissing, match="does not exist"):
        plan_sources([tmp_path / "nope"])
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(UsageError, match="is a file"):
        plan_sources([tmp_path / "f"])


def test_two_sources_with_one_name_back_up_and_restore_apart(tmp_path):
    a = make_tree(tmp_path / "a" / "Docs", {"x.txt": b"from a"})
    b = make_tree(tmp_path / "b" / "Docs", {"x.txt": b"from b"})
    set_path = tmp_path / "set"
    r1 = backup_path(set_path, [a, b])
    # Next run lists them the other way round: nothing changes, nothing is copied.
    r2 = backup_path(set_path, [b, a])
    assert r2.files_copied == 0
    m = BackupSet.open(set_path).manifest(r2.snapshot_id)
    assert {s["name"]: s["path"] for s in m.sources} == {"Docs": str(a), "Docs-2": str(b)}
    restore_path(set_path, tmp_path / "out")
    assert read_tree(tmp_path / "out") == {"Docs/x.txt": b"from a", "Docs-2/x.txt": b"from b"}
    assert r1.snapshot_id != r2.snapshot_id
