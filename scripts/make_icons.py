"""Make the app icon set from one source image.

    python scripts/make_icons.py           # write installers/icons/{plugback.ico,plugback.icns,hicolor/...}
    python scripts/make_icons.py --check   # exit 1 if the committed set is missing or out of date

The source is ``installers/icons/plugback.png`` (square, 1024 px, RGBA). From it:

* ``plugback.ico`` — Windows (16 to 256 px in one file; the .exe and the installer use it),
* ``plugback.icns`` — macOS (16 to 1024 px; the .app bundle uses it),
* ``hicolor/<N>x<N>/apps/plugback.png`` — Linux, laid out as the freedesktop icon
  theme expects, so the .deb copies the tree into ``/usr/share/icons/hicolor``.

The generated files are committed (the tray and the installers load them without
running Pillow at build time); ``--check`` keeps them honest in the tests.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

ICON_DIR = Path(__file__).resolve().parent.parent / "installers" / "icons"
SOURCE = ICON_DIR / "plugback.png"
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)
LINUX_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def _load_source(source: Path) -> Image.Image:
    image = Image.open(source)
    if image.width != image.height or image.width < 512:
        raise SystemExit(f"{source}: the icon source must be square and at least 512 px (it is {image.size})")
    return image.convert("RGBA")


def _scaled(image: Image.Image, size: int) -> Image.Image:
    # LANCZOS keeps the small sizes crisp; the source is drawn with a margin for it.
    return image.resize((size, size), Image.Resampling.LANCZOS)


def render(source: Path = SOURCE) -> dict[str, bytes]:
    """Return the whole icon set as {path relative to installers/icons: file bytes}."""
    image = _load_source(source)
    out: dict[str, bytes] = {}

    buf = io.BytesIO()
    _scaled(image, 256).save(buf, format="ICO", sizes=[(s, s) for s in ICO_SIZES])
    out["plugback.ico"] = buf.getvalue()

    buf = io.BytesIO()
    # Pillow's ICNS writer takes the extra sizes as ready-made images.
    image.save(buf, format="ICNS", append_images=[_scaled(image, s) for s in ICNS_SIZES[:-1]])
    out["plugback.icns"] = buf.getvalue()

    for size in LINUX_SIZES:
        buf = io.BytesIO()
        _scaled(image, size).save(buf, format="PNG", optimize=True)
        out[f"hicolor/{size}x{size}/apps/plugback.png"] = buf.getvalue()
    return out


def stale(icon_dir: Path = ICON_DIR, source: Path = SOURCE) -> list[str]:
    """Names of generated files that are missing or differ from a fresh render."""
    return [name for name, data in render(source).items()
            if not (icon_dir / name).is_file() or (icon_dir / name).read_bytes() != data]


def write(icon_dir: Path = ICON_DIR, source: Path = SOURCE) -> list[str]:
    """Write the icon set; return the names written."""
    written = []
    for name, data in render(source).items():
        path = icon_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the app icon set from installers/icons/plugback.png.")
    parser.add_argument("--check", action="store_true", help="only check that the committed set is up to date")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        if names:
            print("out of date (run python scripts/make_icons.py): " + ", ".join(names), file=sys.stderr)
            return 1
        return 0
    for name in write():
        print(ICON_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
