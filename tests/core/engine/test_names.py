"""Mirror names: what a FAT/exFAT/NTFS destination cannot hold, and the stable names used instead."""

from __future__ import annotations

import pytest

from core.engine.fs import VolumeInfo
from core.engine.names import MirrorNamer, escape_component

POSIX = VolumeInfo("ext4", case_insensitive=False, windows_names=False, symlinks=True, max_file_size=None)
EXFAT = VolumeInfo("fuseblk", case_insensitive=True, windows_names=True, symlinks=False, max_file_size=None)
FAT = VolumeInfo("fuse.fusefat", case_insensitive=True, windows_names=True, symlinks=False,
                 max_file_size=(1 << 32) - 1, ascii_only=True)
APFS_LIKE = VolumeInfo("apfs", case_insensitive=True, windows_names=False, symlinks=True, max_file_size=None)


@pytest.mark.parametrize("name,expected", [
    ("plain.txt", "plain.txt"),
    ("a:b.txt", "a%3Ab.txt"),
    ("what?.txt", "what%3F.txt"),
    ('<>:"\\|?*', "%3C%3E%3A%22%5C%7C%3F%2A"),
    ("tab\there", "tab%09here"),
    ("nl\nx", "nl%0Ax"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("CON.tar.gz", "_CON.tar.gz"),
    ("Nul", "_Nul"),
    ("COM1.log", "_COM1.log"),
    ("LPT9", "_LPT9"),
    ("COM10", "COM10"),            # only COM0-9 are reserved
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("aux-notes", "aux-notes"),
    ("trailing.", "trailing%2E"),
    ("trailing ", "trailing%20"),
    ("dots...", "dots..%2E"),
    (" leading space", " leading space"),
    ("Résumé.pdf", "Résumé.pdf"),
    ("日本語", "日本語"),
    ("100%", "100%"),
])
def test_escape_on_windows_volumes(name, expected):
    assert escape_component(name, EXFAT) == expected


@pytest.mark.parametrize("name", ["a:b.txt", "CON", "trailing.", "trailing ", "what?", "Résumé"])
def test_posix_volumes_keep_every_name(name):
    assert escape_component(name, POSIX) == name
    assert escape_component(name, APFS_LIKE) == name


@pytest.mark.parametrize("name,expected", [
    ("Résumé.pdf", "R%C3%A9sum%C3%A9.pdf"),
    ("日本", "%E6%97%A5%E6%9C%AC"),
    ("a:é.", "a%3A%C3%A9%2E"),
    ("plain", "plain"),
])
def test_ascii_only_volumes_spell_out_other_characters(name, expected):
    out = escape_component(name, FAT)
    assert out == expected and out.isascii()


def test_undecodable_posix_bytes_become_printable():
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")   # Latin-1 name on a UTF-8 system
    out = escape_component(name, EXFAT)
    out.encode("utf-8")   # holdable: valid Unicode
    assert out != name and out.endswith(".txt")
    assert escape_component(name, FAT) == "caf%E9.txt"


@pytest.mark.parametrize("name", ["ok.txt", "a:b", "CON", "x.", "é", "a" * 80])
def test_escaped_names_need_no_further_escaping(name):
    once = escape_component(name, FAT)
    assert escape_component(once, FAT) == once


def test_case_only_collisions_get_numbered():
    namer = MirrorNamer(EXFAT)
    assert namer.name_for("Docs", "README.md") == "README.md"
    assert namer.name_for("Docs", "Readme.md") == "Readme~1.md"
    assert namer.name_for("Docs", "readme.md") == "readme~2.md"
    assert namer.name_for("Docs", "Makefile") == "Makefile"
    assert namer.name_for("Docs", "MAKEFILE") == "MAKEFILE~1"
    assert namer.name_for("Docs", ".bashrc") == ".bashrc"
    assert namer.name_for("Docs", ".BASHRC") == ".BASHRC~1"    # no stem: the suffix goes last


def test_collisions_are_per_folder():
    namer = MirrorNamer(EXFAT)
    assert namer.name_for("a", "X") == "X"
    assert namer.name_for("b", "x") == "x"
    assert namer.name_for("", "x") == "x"


def test_case_sensitive_volumes_do_not_number():
    namer = MirrorNamer(POSIX)
    assert [namer.name_for("", n) for n in ("README", "Readme", "readme")] == ["README", "Readme", "readme"]
    namer = MirrorNamer(APFS_LIKE)
    assert [namer.name_for("", n) for n in ("README", "Readme")] == ["README", "Readme~1"]


def test_escaping_can_collide_with_a_real_name():
    # "a:b" escapes to "a%3Ab", which another file may really be called.
    namer = MirrorNamer(EXFAT)
    assert namer.name_for("", "a%3Ab") == "a%3Ab"
    assert namer.name_for("", "a:b") == "a%3Ab~1"
    namer = MirrorNamer(EXFAT)
    assert namer.name_for("", "a:b") == "a%3Ab"
    assert namer.name_for("", "A%3AB") == "A%3AB~1"


def test_reserved_names_from_the_parent_snapshot_are_kept_stable():
    # Last run: "Readme.md" came first and kept its name, "README.md" got "~1".
    # This run both exist again: their names are reserved before anything new is named,
    # so a newcomer gets a fresh number and nobody's mirror name changes.
    namer = MirrorNamer(EXFAT)
    namer.reserve("Docs", "Readme.md")
    namer.reserve("Docs", "README~1.md")
    assert namer.name_for("Docs", "readme.md") == "readme~2.md"
    assert namer.name_for("Docs", "README~1.md") == "README~1~1.md"   # a real file with that name
    assert namer.name_for("Docs", "other.md") == "other.md"


def test_a_freed_name_is_reused_only_when_not_reserved():
    namer = MirrorNamer(EXFAT)
    namer.reserve("", "README~1.md")
    assert namer.name_for("", "README.md") == "README.md"        # the plain name was freed
    assert namer.name_for("", "readme.md") == "readme~2.md"       # ~1 is still someone's


@pytest.mark.parametrize("name", ["é" * 120 + ".txt", "a:" * 100 + "b.jpeg", "日本語" * 40, "x" * 250 + ":y"])
def test_escaping_never_makes_a_name_too_long(name):
    out = escape_component(name, FAT)
    assert len(out) <= 255 and out.isascii()
    assert escape_component(name, FAT) == out                         # stable across runs
    if "." in name:
        assert out.endswith("." + name.rpartition(".")[2])            # the extension survives
    # Two long names that share their first 240 characters still get different mirror names.
    assert escape_component(name[:-1] + "Z", FAT) != out
    namer = MirrorNamer(FAT)
    assert len(namer.name_for("", name)) <= 255 and len(namer.name_for("", name)) <= 255


def test_shortening_never_cuts_an_escape_in_half():
    for n in range(150, 260):
        out = escape_component("é" * n, FAT)
        stem = out.rpartition("~")[0]
        assert all(stem[i + 1:i + 3] in ("C3", "A9") for i, c in enumerate(stem) if c == "%"), out
        assert len(stem) % 3 == 0
