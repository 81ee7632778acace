#!/usr/bin/env bash
# Build the Linux app: the frozen one-folder bundle, a .deb and a tarball.
#
#   scripts/build-linux.sh            # skips the build when nothing it depends on changed
#   scripts/build-linux.sh --force    # build even so
#
# Output (in $PLUGBACK_DIST, default dist/):
#   plugback/                          the frozen folder: plugback-tray, plugback, _internal/
#   plugback_<version>_<arch>.deb      installs to /opt/plugback, commands in /usr/bin
#   plugback-<version>-linux-<arch>.tar.gz   the same files for any distribution, with install.sh
#   build-info.json                    sizes, times, source hash (read by tests and docs)
#
# Needs: the project venv with the build extra (pip install -e '.[build,gtk]'),
# dpkg-deb (Debian package dpkg), and the GTK stack the app uses
# (gir1.2-gtk-3.0 gir1.2-webkit2-4.1 gir1.2-ayatanaappindicator3-0.1): the .deb
# depends on those instead of carrying copies (installers/linux/system_stack.py).
# Environment: PYTHON (default .venv/bin/python), PLUGBACK_DIST (output folder).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
DIST=${PLUGBACK_DIST:-$ROOT/dist}
WORK=$ROOT/build/pyinstaller
STAGE=$ROOT/build/deb
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'build-linux: %s\n' "$*" >&2; }
die() { printf 'build-linux: ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$PYTHON" ] || die "no Python at $PYTHON (run scripts/setup.sh, or set PYTHON=...)"
"$PYTHON" -c 'import PyInstaller' 2>/dev/null \
    || die "PyInstaller is missing: $PYTHON -m pip install -e '.[build]'"
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"
"$PYTHON" installers/linux/system_stack.py >/dev/null \
    || die "the GTK stack is not installed: apt-get install gir1.2-gtk-3.0 gir1.2-webkit2-4.1 gir1.2-ayatanaappindicator3-0.1"

VERSION=$("$PYTHON" -c 'import runpy; print(runpy.run_path("core/__init__.py")["__version__"])')
ARCH=$(dpkg --print-architecture)
MACHINE=$(uname -m)
DEB=$DIST/plugback_${VERSION}_${ARCH}.deb
TARBALL=$DIST/plugback-${VERSION}-linux-${MACHINE}.tar.gz
INFO=$DIST/build-info.json

source_hash() {
    # Everything the build reads: sources, assets, recipes, and the installed packages.
    {
        find core tray ui installers -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
            | sort -z | xargs -0 sha256sum
        sha256sum pyinstaller.spec pyproject.toml scripts/build-linux.sh
        "$PYTHON" -m pip freeze --disable-pip-version-check 2>/dev/null | grep -v '^-e '
        "$PYTHON" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

mkdir -p "$DIST"
# One build at a time per output folder (two test runs sharing a build cache).
if command -v flock >/dev/null; then
    exec 9>"$DIST/.build.lock"
    flock 9
fi

HASH=$(source_hash)
if [ $FORCE = 0 ] && [ -f "$INFO" ] && [ -f "$DEB" ] && [ -f "$TARBALL" ] && [ -x "$DIST/plugback/plugback" ] \
    && grep -q "\"source_hash\": \"$HASH\"" "$INFO"; then
    log "up to date ($DIST); use --force to rebuild"
    exit 0
fi

# -- 1. the frozen folder ----------------------------------------------------------
log "pyinstaller ($VERSION, $ARCH)"
started=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" --workpath "$WORK" pyinstaller.spec
freeze_seconds=$(( $(date +%s) - started ))
{ [ -x "$DIST/plugback/plugback" ] && [ -x "$DIST/plugback/plugback-tray" ]; } \
    || die "PyInstaller did not produce both executables in $DIST/plugback"

# -- 2. the .deb -------------------------------------------------------------------
# Layout: the frozen folder in /opt/plugback (it must stay whole: the executables
# find _internal/ next to their real path), commands as symlinks in /usr/bin.
PKG=$STAGE/plugback_${VERSION}_${ARCH}
rm -rf "$PKG"
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications" \
    "$PKG/usr/share/plugback/autostart" "$PKG/usr/share/doc/plugback"
cp -a "$DIST/plugback" "$PKG/opt/plugback"
ln -s /opt/plugback/plugback "$PKG/usr/bin/plugback"
ln -s /opt/plugback/plugback-tray "$PKG/usr/bin/plugback-tray"
install -m 0644 installers/linux/plugback.desktop "$PKG/usr/share/applications/plugback.desktop"
install -m 0644 installers/linux/plugback-tray-autostart.desktop "$PKG/usr/share/plugback/autostart/plugback.desktop"
mkdir -p "$PKG/usr/share/icons"
cp -a installers/icons/hicolor "$PKG/usr/share/icons/"
cat > "$PKG/usr/share/doc/plugback/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: plugback
License: MIT
Comment: The folder /opt/plugback carries Python and the Python packages the app
 uses (pystray, Pillow, pywebview, cryptography, keyring, psutil, schedule,
 platformdirs, pathspec, PyGObject), each under its own license.
EOF
# Installed-Size is in KiB.
installed_kib=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
depends="libc6 (>= $glibc)"
for pkg in $("$PYTHON" -c 'import runpy; print(" ".join(runpy.run_path("installers/linux/system_stack.py")["ROOT_PACKAGES"]))'); do
    depends="$depends, $pkg"
done
cat > "$PKG/DEBIAN/control" <<EOF
Package: plugback
Version: $VERSION
Architecture: $ARCH
Maintainer: Plugback developers <plugback@users.noreply.github.com>
Installed-Size: $installed_kib
Depends: $depends
Recommends: gnome-keyring | kwalletmanager, libnotify-bin, rclone
Suggests: udisks2
Section: utils
Priority: optional
Homepage: https://github.com/plugback/plugback
Description: snapshot backups to a drive when you plug it in
 Plugback sits in the system tray. Plug in your backup drive and your folders
 are backed up to it, verified, and the tray says "safe to unplug". Every
 backup is a snapshot you can browse and restore from; the newest is plain
 files on the drive. Also runs on a schedule and from the plugback command.
EOF
# No maintainer scripts: dpkg's file triggers refresh the icon cache and the
# desktop database; backups and per-user config are never the package's files.
rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB" >/dev/null
log "built $DEB"

# -- 3. the tarball ----------------------------------------------------------------
TAR_STAGE=$STAGE/plugback-$VERSION
rm -rf "$TAR_STAGE"
mkdir -p "$TAR_STAGE/share/applications" "$TAR_STAGE/share/icons"
cp -a "$DIST/plugback" "$TAR_STAGE/plugback"
install -m 0644 installers/linux/plugback.desktop installers/linux/plugback-tray-autostart.desktop \
    "$TAR_STAGE/share/applications/"
cp -a installers/icons/hicolor "$TAR_STAGE/share/icons/"
install -m 0755 installers/linux/install-tarball.sh "$TAR_STAGE/install.sh"
tar -C "$STAGE" -czf "$TARBALL" "plugback-$VERSION"
log "built $TARBALL"

# -- 4. what was built -------------------------------------------------------------
"$PYTHON" - "$INFO" "$HASH" "$VERSION" "$freeze_seconds" "$DIST/plugback" "$DEB" "$TARBALL" <<'EOF'
import json, os, sys
info, source_hash, version, seconds, folder, deb, tarball = sys.argv[1:]
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs
           if not os.path.islink(os.path.join(d, f)))
json.dump({"source_hash": source_hash, "version": version, "freeze_seconds": int(seconds),
           "folder_bytes": size, "deb": os.path.basename(deb), "deb_bytes": os.path.getsize(deb),
           "tarball": os.path.basename(tarball), "tarball_bytes": os.path.getsize(tarball)},
          open(info, "w"), indent=1)
EOF
log "done: $(du -sh "$DIST/plugback" | cut -f1) folder, $(du -h "$DEB" | cut -f1) .deb (${freeze_seconds}s to freeze)"
