#!/usr/bin/env bash
# Build Plugback.app and a .dmg on macOS; sign and notarize when credentials are given.
#
#   installers/macos/build-dmg.sh
#
# Output: dist/Plugback.app (menu-bar only: LSUIElement, set in pyinstaller.spec)
# and dist/plugback-<version>-macos-<arch>.dmg (the app + an Applications link).
#
# Signing (optional; see SIGNING.md):
#   MACOS_SIGN_IDENTITY   "Developer ID Application: Name (TEAMID)" in the keychain
#   MACOS_NOTARY_PROFILE  a notarytool keychain profile (xcrun notarytool store-credentials)
# Without them the app is ad-hoc signed: it runs on the machine that built it, and
# elsewhere only after the user allows it (right-click > Open).
# Environment: PYTHON (default .venv/bin/python).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
DIST=$ROOT/dist
APP=$DIST/Plugback.app
ENTITLEMENTS=$ROOT/installers/macos/entitlements.plist

log() { printf 'build-dmg: %s\n' "$*" >&2; }
die() { printf 'build-dmg: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)" = "Darwin" ] || die "this script runs on macOS (hdiutil, codesign)"
"$PYTHON" -c 'import PyInstaller' 2>/dev/null || die "PyInstaller is missing: $PYTHON -m pip install -e '.[build]'"

VERSION=$("$PYTHON" -c 'import runpy; print(runpy.run_path("core/__init__.py")["__version__"])')
ARCH=$(uname -m)
DMG=$DIST/plugback-${VERSION}-macos-${ARCH}.dmg

log "pyinstaller ($VERSION, $ARCH)"
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" --workpath "$ROOT/build/pyinstaller" pyinstaller.spec
{ [ -x "$APP/Contents/MacOS/plugback-tray" ] && [ -x "$APP/Contents/MacOS/plugback" ]; } \
    || die "PyInstaller did not produce both executables in $APP"
/usr/libexec/PlistBuddy -c 'Print :LSUIElement' "$APP/Contents/Info.plist" | grep -q true \
    || die "Info.plist lacks LSUIElement: the app would show a Dock icon"

# rclone's official build for this Mac next to the executables (cloud and network sets;
# docs/installers.md "rclone"), checked against its pinned SHA-256; signed below with the rest.
# PLUGBACK_RCLONE_ZIP: an archive already on disk (offline builds).
log "rclone"
"$PYTHON" scripts/fetch_rclone.py --platform auto --dest "$APP/Contents/MacOS" \
    --license-dest "$APP/Contents/Resources" ${PLUGBACK_RCLONE_ZIP:+--from-zip "$PLUGBACK_RCLONE_ZIP"} \
    || die "could not bundle rclone"

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
    # Inside out: every nested binary, then the executables, then the bundle. Hardened
    # runtime (--options runtime) is what notarization requires.
    log "signing with $MACOS_SIGN_IDENTITY"
    find "$APP/Contents" -type f \( -name '*.so' -o -name '*.dylib' -o -perm -111 \) -print0 \
        | xargs -0 codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
            --sign "$MACOS_SIGN_IDENTITY"
    codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
        --sign "$MACOS_SIGN_IDENTITY" "$APP"
    codesign --verify --deep --strict --verbose=2 "$APP"
else
    log "MACOS_SIGN_IDENTITY not set: ad-hoc signature only (see installers/macos/SIGNING.md)"
    codesign --force --deep --sign - "$APP"
fi

log "making $DMG"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "Plugback $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG" >/dev/null

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
    codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$DMG"
fi
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
    log "notarizing (this waits for Apple, usually a few minutes)"
    xcrun notarytool submit "$DMG" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
    xcrun stapler validate "$DMG"
fi
log "done: $DMG ($(du -h "$DMG" | cut -f1))"
