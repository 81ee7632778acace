"""The dependency direction of DESIGN §1: tray -> core, ui -> core, never the reverse.

* Inside core: ``cli -> agent -> engine``. The engine imports nothing from the
  agent, the CLI or the platform layer; the agent nothing from the CLI.
* ``core`` imports no GUI library (pystray, PIL, webview) and neither ``tray`` nor ``ui``:
  checked statically (every ``import`` in core/**/*.py, including ones inside
  functions) and at run time (importing every core module in a fresh interpreter
  leaves none of them in ``sys.modules``).
* ``tray`` and ``ui`` never import each other (they talk over IPC).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import repo_root

ROOT = repo_root()
CORE_FORBIDDEN = {"pystray", "PIL", "webview", "tray", "ui"}
# Per-OS modules a core/platform backend may import; absent on this OS, so such a module
# is checked statically only.
OTHER_OS_MODULES = {"winreg", "msvcrt", "_winapi", "win32api", "win32con", "win32gui", "win32file",
                    "pywintypes", "pythoncom", "wmi", "AppKit", "Foundation", "objc", "CoreFoundation"}


def imported_roots(source: str, module: str) -> set[str]:
    """Top-level package names imported by ``source`` (absolute imports; relative ones resolved
    against the dotted ``module`` name)."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                roots.add(node.module.split(".")[0])
            else:
                # `from .. import x` inside core stays inside core; from a top-level package it
                # would name the package itself.
                roots.add(module.split(".")[0])
    return roots


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str) -> set[str]:
    """Every absolute dotted module name ``source`` imports (``from a.b import c`` gives a.b and a.b.c)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(package: str, forbidden: set[str]) -> list[str]:
    """Modules under ``package`` (a folder, e.g. "core/engine") importing a forbidden module or
    package (a top-level name like "PIL", or a dotted prefix like "core.agent")."""
    found = []
    for path in python_files(package):
        source = path.read_text(encoding="utf-8")
        names = imported_modules(source) | imported_roots(source, module_name(path))
        bad = {f for f in forbidden for n in names if n == f or n.startswith(f + ".")}
        if bad:
            found.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    return found


def test_the_import_scanner_sees_every_form_of_import():
    source = textwrap.dedent("""
        import os, pystray.backend
        from PIL import Image
        def later():
            import webview
            from tray.menu import build
        from . import sibling
    """)
    assert imported_roots(source, "core.platform.linux") == {"os", "pystray", "PIL", "webview", "tray", "core"}


def test_core_has_python_files_to_check():
    assert len(python_files("core/engine")) >= 10
    assert len(python_files("core/agent")) >= 5


def test_the_engine_imports_neither_agent_nor_cli_nor_platform():
    assert violations("core/engine", {"core.agent", "core.cli", "core.platform"}) == []


def test_the_agent_never_imports_the_cli():
    assert violations("core/agent", {"core.cli"}) == []


def test_the_scanner_sees_a_forbidden_dotted_import():
    assert imported_modules("from core import agent\nimport core.cli.render") >= {"core.agent", "core.cli.render"}


def test_core_source_imports_no_gui_and_neither_tray_nor_ui():
    assert violations("core", CORE_FORBIDDEN) == []


@pytest.mark.parametrize("package, other", [("tray", "ui"), ("ui", "tray")])
def test_tray_and_ui_never_import_each_other(package, other):
    assert violations(package, {other}) == []


IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
import core
failed, skipped = {}, []
for info in sorted(pkgutil.walk_packages(core.__path__, "core."), key=lambda i: i.name):
    if info.name.endswith(".__main__"):  # runs the program when imported
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as err:
        (skipped.append(info.name) if err.name in OTHER_OS else failed.__setitem__(info.name, repr(err)))
    except Exception as err:
        failed[info.name] = repr(err)
roots = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"roots": roots, "failed": failed, "skipped": skipped,
                  "imported": sorted(n for n in sys.modules if n.startswith("core"))}))
"""


def test_importing_every_core_module_loads_no_gui_library():
    code = f"OTHER_OS = {sorted(OTHER_OS_MODULES)!r}\n" + IMPORT_ALL
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, "core modules that do not import"
    assert "core.errors" in report["imported"]
    assert sorted(CORE_FORBIDDEN & set(report["roots"])) == []
