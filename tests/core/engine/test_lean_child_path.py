"""A lean worker (core/engine/lean_child.py) imports its module from the parent's code, never from the
folder it was started in (issue #11, branch ``readers11``).

``python -S -c`` puts the current folder first on the module path: a worker started from a folder
holding a module of the same name (another checkout of plugback, or anything a user's folder holds)
ran that code instead, e.g. ``verify``'s readers from whatever checkout was the current folder.
"""

from __future__ import annotations

from core.engine.lean_child import start_lean


def test_a_lean_worker_does_not_import_from_the_current_folder(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    (tmp_path / "r11_lean_probe.py").write_text(f"def child():\n    open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    proc, conn = start_lean("r11_lean_probe", [])
    try:
        assert proc.wait(timeout=60) != 0   # (the module is found nowhere else: ImportError)
    finally:
        conn.close()
    assert not marker.exists(), "the worker ran code from the current folder"
