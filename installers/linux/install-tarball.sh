#!/usr/bin/env bash
# Install Plugback from the tarball for the current user (no root needed).
#
#   ./install.sh              install to ~/.local/opt/plugback, commands in ~/.local/bin
#   ./install.sh --uninstall  remove those again (backups and settings are left alone)
#
# The app uses the system's GTK 3, WebKitGTK 4.1 and Ayatana AppIndicator; on
# Debian / Ubuntu: sudo apt install gir1.2-gtk-3.0 gir1.2-webkit2-4.1 gir1.2-ayatanaappindicator3-0.1
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
CONFIG=${XDG_CONFIG_HOME:-$HOME/.config}
OPT=$HOME/.local/opt/plugback
BIN=$HOME/.local/bin

if [ "${1:-}" = "--uninstall" ]; then
    rm -rf "$OPT"
    rm -f "$BIN/plugback" "$BIN/plugback-tray" "$DATA/applications/plugback.desktop" \
        "$CONFIG/autostart/plugback.desktop"
    find "$DATA/icons/hicolor" -name plugback.png -delete 2>/dev/null || true
    echo "Plugback removed. Your backups and settings were not touched."
    exit 0
fi

rm -rf "$OPT"
mkdir -p "$(dirname "$OPT")" "$BIN" "$DATA/applications" "$DATA/icons"
cp -a "$HERE/plugback" "$OPT"
ln -sf "$OPT/plugback" "$BIN/plugback"
ln -sf "$OPT/plugback-tray" "$BIN/plugback-tray"
cp -a "$HERE/share/icons/hicolor" "$DATA/icons/"
# The menu entry names the command by its full path: ~/.local/bin may not be on
# the desktop session's PATH.
sed "s|^Exec=plugback-tray|Exec=$OPT/plugback-tray|" "$HERE/share/applications/plugback.desktop" \
    > "$DATA/applications/plugback.desktop"
echo "Plugback installed in $OPT. Start it from your applications menu, or run: $BIN/plugback-tray"
