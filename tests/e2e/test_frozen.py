"""The frozen app on Linux: build it, install the .deb, use it, remove it.

``scripts/build-linux.sh`` builds the PyInstaller folder, the .deb and the
tarball into a build cache (``PLUGBACK_FROZEN_DIST``, default
``~/.cache/plugback/frozen``); it skips the build when the hash of everything it
reads is unchanged, so only the first run on a machine pays the minute or so.

The .deb is installed with ``dpkg -i`` (root only; skipped with the reason
otherwise) and always removed again at the end. Without root, the app tests run
the frozen folder straight from the build output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.env import repo_root, subprocess_env
from tests.support.trees import Symlink, make_tree, read_tree

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux build; the release workflow builds the others"),
]

ROOT = repo_root()
# Read at import time, before the autouse fixture points XDG_CACHE_HOME at a temp folder:
# the build cache must outlive the test.
BUILD_DIST = Path(os.environ.get("PLUGBACK_FROZEN_DIST")
                  or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plugback" / "frozen")
BUILD_ENV = {name: os.environ[name] for name in ("HOME", "XDG_CACHE_HOME") if name in os.environ}
PACKAGE = "plugback"
DEB_LOCK = "/tmp/plugback-e2e-deb.lock"
# The frozen app has only the keyring backends it ships; the null one keeps the
# tests away from the real keyring (the test environment's file keyring is a
# test-only package the bundle does not carry).
FROZEN_ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}

TREE = {
    "Documents/letter.txt": b"Dear Ada,\n",
    "Documents/Reports/2026 q3.csv": b"month,total\njul,1\n" * 500,
    "Documents/caf\u00e9 menu.txt": "cr\u00eape, galette".encode(),
    "Documents/empty.txt": b"",
    "Documents/Empty folder/": None,
    "Documents/big.bin": os.urandom(3 << 20),
    "Documents/latest": Symlink("letter.txt"),
}


# --- the build ----------------------------------------------------------------------

def _build_prerequisites() -> str | None:
    """Why the build cannot run here, or None."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        return "PyInstaller is not installed (pip install -e '.[build]')"
    if shutil.which("dpkg-deb") is None:
        return "dpkg-deb is missing (not a Debian-like system)"
    probe = subprocess.run([sys.executable, str(ROOT / "installers" / "linux" / "system_stack.py")],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"the system GTK stack is missing: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def build() -> dict:
    """Run scripts/build-linux.sh (cached by source hash); return its build-info.json."""
    reason = _build_prerequisites()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-linux.sh")],
        env=subprocess_env({**BUILD_ENV, "PYTHON": sys.executable, "PLUGBACK_DIST": str(BUILD_DIST)}),
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    info = json.loads((BUILD_DIST / "build-info.json").read_text())
    info["build_seconds_this_run"] = round(time.monotonic() - started, 1)
    return info


@pytest.fixture(scope="module")
def installed(build) -> Path:
    """Install the .deb (dpkg -i); remove it at the end whatever happened. Yields /usr/bin."""
    if os.geteuid() != 0:
        pytest.skip("installing the .deb needs root (dpkg -i)")
    if shutil.which("dpkg") is None:
        pytest.skip("no dpkg on this machine")
    import fcntl  # (here, not at the top: Windows has no fcntl, and CI collects this file there)

    # The package is machine-wide: one test run at a time may own it.
    with open(DEB_LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip(f"another test run holds {DEB_LOCK} and has the .deb installed")
        if _installed_version() is not None:
            pytest.skip("a plugback package is already installed here; the test does not replace it")
        deb = BUILD_DIST / build["deb"]
        try:
            proc = _dpkg("-i", str(deb))
            assert proc.returncode == 0, f"dpkg -i {deb.name} failed:\n{proc.stdout}\n{proc.stderr}"
            yield Path("/usr/bin")
        finally:
            if _installed_version() is not None:
                _dpkg("-r", PACKAGE)


@pytest.fixture
def frozen_bin(request, build) -> Path:
    """Where the frozen plugback and plugback-tray are: /usr/bin from the .deb, or the build folder."""
    if os.geteuid() == 0 and shutil.which("dpkg"):
        try:
            return request.getfixturevalue("installed")
        except pytest.skip.Exception:
            pass   # the .deb cannot be installed here now (reason in the deb tests); use the folder
    return BUILD_DIST / "plugback"


def _dpkg(*args: str, wait: float = 300) -> subprocess.CompletedProcess:
    """Run dpkg; while another apt/dpkg (setup, a parallel run) holds its lock, wait and retry."""
    deadline = time.monotonic() + wait
    while True:
        proc = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        # dpkg does not wait for its lock itself (apt's DPkg::Lock::Timeout is apt's).
        if proc.returncode == 0 or "lock" not in proc.stderr or time.monotonic() > deadline:
            return proc
        time.sleep(2)


def _installed_version() -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", PACKAGE],
                          capture_output=True, text=True)
    status, _, version = proc.stdout.partition(" ")
    return version if proc.returncode == 0 and status == "installed" else None


def _run(exe: Path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=subprocess_env(FROZEN_ENV), timeout=timeout)


# --- fast checks of the recipes (no build) ------------------------------------------

def test_icon_set_is_made_from_the_source():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_icons.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils is not installed")
def test_desktop_entries_are_valid():
    entries = sorted((ROOT / "installers" / "linux").glob("*.desktop"))
    assert len(entries) == 2
    proc = subprocess.run(["desktop-file-validate", *map(str, entries)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class _Recorded:
    """Stands in for one of PyInstaller's spec classes; keeps what the spec passed."""

    made: list = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.pure = self.scripts = self.binaries = self.datas = []
        type(self).made.append(self)


def _evaluate_spec(monkeypatch, platform: str) -> dict[str, list]:
    """Run pyinstaller.spec as PyInstaller would on ``platform``, with recording stand-ins."""
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("PLUGBACK_BUNDLE_GTK", "1")   # no dpkg queries for this
    made: dict[str, list] = {}
    spec_globals = {"SPECPATH": str(ROOT), "__file__": str(ROOT / "pyinstaller.spec")}
    for name in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"):
        spec_globals[name] = type(name, (_Recorded,), {"made": made.setdefault(name, [])})
    exec(compile((ROOT / "pyinstaller.spec").read_text(), "pyinstaller.spec", "exec"), spec_globals)
    return made


@pytest.mark.parametrize("platform, backends", [
    ("linux", ["pystray._appindicator", "pystray._gtk", "pystray._xorg", "webview.platforms.gtk",
               "gi.repository.WebKit2", "gi.repository.AyatanaAppIndicator3", "secretstorage"]),
    ("win32", ["pystray._win32", "webview.platforms.winforms", "webview.platforms.edgechromium", "clr",
               "win32ctypes.core"]),
    ("darwin", ["pystray._darwin", "webview.platforms.cocoa", "AppKit", "WebKit", "keyring.backends.macOS.api"]),
])
def test_spec_names_each_platforms_backends(monkeypatch, platform, backends):
    made = _evaluate_spec(monkeypatch, platform)
    tray, cli = made["Analysis"]
    assert tray.args[0][0].endswith("plugback_tray.py") and cli.args[0][0].endswith("plugback.py")
    for name in backends + ["keyring.backends.SecretService", "keyring.backends.Windows", "ui.window"]:
        assert name in tray.kwargs["hiddenimports"], name
    assert {"PyQt5", "PyQt6", "PySide6", "webview.platforms.qt", "tkinter"} <= set(tray.kwargs["excludes"])
    exes = {exe.kwargs["name"]: exe.kwargs for exe in made["EXE"]}
    assert exes["plugback-tray"]["console"] is False and exes["plugback"]["console"] is True
    (collect,) = made["COLLECT"]
    assert collect.kwargs["name"] == "plugback"
    for src, _ in tray.kwargs["datas"]:
        assert Path(src).exists(), src
    if platform == "darwin":
        (bundle,) = made["BUNDLE"]
        assert bundle.kwargs["info_plist"]["LSUIElement"] is True
        assert bundle.kwargs["icon"].endswith(".icns") and Path(bundle.kwargs["icon"]).is_file()
    else:
        assert made["BUNDLE"] == []
    if platform == "win32":
        assert exes["plugback-tray"]["icon"].endswith(".ico") and Path(exes["plugback-tray"]["icon"]).is_file()


# --- the bundle -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bundle_names_every_backend_chosen_at_run_time(build):
    """pystray, pywebview, keyring and tray pick these at run time; the bundle must carry them."""
    from PyInstaller.archive.readers import CArchiveReader

    def modules(exe):
        archive = CArchiveReader(str(BUILD_DIST / "plugback" / exe))
        return set(archive.open_embedded_archive("PYZ.pyz").toc)

    tray = modules("plugback-tray")
    for name in ("pystray._appindicator", "pystray._gtk", "pystray._xorg", "webview.platforms.gtk",
                 "ui.window", "ui.api", "PIL.PngImagePlugin", "keyring.backends.SecretService",
                 "keyring.backends.libsecret", "keyring.backends.chainer", "keyring.backends.fail"):
        assert name in tray, name
    cli = modules("plugback")
    assert "keyring.backends.SecretService" in cli
    assert not any(m.split(".")[0] in {"PyQt5", "PyQt6", "PySide2", "PySide6", "tkinter"} for m in tray | cli)
    assert "webview.platforms.qt" not in tray
    internal = BUILD_DIST / "plugback" / "_internal"
    # keyring finds its backends by entry points: the metadata must travel with it.
    assert list(internal.glob("keyring-*.dist-info/entry_points.txt"))
    assert (internal / "ui" / "web").is_dir() and any((internal / "ui" / "web").iterdir())
    # The GTK stack is the system's (the .deb depends on it), not a stale copy.
    assert not list(internal.glob("libgtk-3.so*")) and not list(internal.glob("libwebkit2gtk*"))
    assert not (internal / "gi_typelibs").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deb_declares_the_gtk_stack_and_installs_the_desktop_files(build, installed):
    deb = BUILD_DIST / build["deb"]
    control = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True).stdout
    for package in ("gir1.2-gtk-3.0", "gir1.2-webkit2-4.1", "gir1.2-ayatanaappindicator3-0.1"):
        assert package in control
    assert _installed_version() == build["version"]
    assert os.path.realpath(installed / "plugback") == "/opt/plugback/plugback"
    assert Path("/usr/share/applications/plugback.desktop").is_file()
    assert Path("/usr/share/icons/hicolor/256x256/apps/plugback.png").is_file()
    assert Path("/usr/share/plugback/autostart/plugback.desktop").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_frozen_cli_backs_up_verifies_and_restores(frozen_bin, tmp_path):
    plugback = frozen_bin / "plugback"
    version = _run(plugback, "--version")
    assert version.returncode == 0 and version.stdout.startswith("plugback "), version.stderr
    source = make_tree(tmp_path / "Documents", TREE)
    drive = tmp_path / "drive"
    drive.mkdir()
    backup_set = drive / "Plugback"

    backup = _run(plugback, "backup", source, "--to", backup_set, "--json")
    assert backup.returncode == 0, backup.stderr
    result = json.loads(backup.stdout)
    assert result["status"] == "ok"
    assert result["files_scanned"] == 5

    verify = _run(plugback, "verify", backup_set, "--read-all", "--json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["damaged"] == []

    target = tmp_path / "restored"
    restore = _run(plugback, "restore", backup_set, target)
    assert restore.returncode == 0, restore.stderr
    assert read_tree(target / "Documents") == read_tree(source)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_frozen_cli_finds_the_secretservice_keyring(frozen_bin, dbus_session, tmp_path):
    """keyring picks its backend through entry points: the frozen app must still reach SecretService."""
    source = make_tree(tmp_path / "Private", {"diary.txt": b"dear diary"})
    backup_set = tmp_path / "set"
    plugback = str(frozen_bin / "plugback")
    # One session: --remember stores the passphrase in gnome-keyring, then verify and
    # restore find it there with no passphrase given.
    script = (f'PLUGBACK_PASSPHRASE=correct-horse "{plugback}" backup "{source}" --to "{backup_set}" --encrypt --remember'
              f' && "{plugback}" verify "{backup_set}" --read-all'
              f' && "{plugback}" restore "{backup_set}" "{tmp_path / "out"}"')
    proc = dbus_session(["sh", "-c", script], timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_tree(tmp_path / "out" / "Private") == read_tree(source)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_frozen_agent_starts_answers_status_and_quits(frozen_bin, plugback_env):
    agent = subprocess.Popen([str(frozen_bin / "plugback-tray"), "--no-icon"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=subprocess_env(FROZEN_ENV))
    try:
        status = _wait_for_agent(frozen_bin, agent)
        assert status["backend"] == "none"   # --no-icon
        assert status["jobs"] == []

        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=30)
        assert agent.returncode == 0, output
        assert "agent stopped" in output
        after = _run(frozen_bin / "plugback", "status", "--json", timeout=30)
        assert json.loads(after.stdout).get("agent") is False
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_frozen_tray_icon_and_settings_window_use_the_system_gtk(frozen_bin, desktop, screenshot, plugback_env):
    """The GUI halves frozen: the AppIndicator icon loads; a second launch (what the menu entry
    does) makes the agent open the WebKitGTK settings window, which shows the pages."""
    import psutil

    # The user's own library path, which programs the app starts must get back (not _internal/).
    env = subprocess_env({**FROZEN_ENV, "LD_LIBRARY_PATH": "/opt/users-own-libs"})
    agent = subprocess.Popen([str(frozen_bin / "plugback-tray")], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    window = None
    try:
        status = _wait_for_agent(frozen_bin, agent)
        assert status["backend"] in ("appindicator", "gtk"), status["backend"]

        second = subprocess.run([str(frozen_bin / "plugback-tray")], env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 0, second.stderr
        deadline = time.monotonic() + 30
        while window is None and time.monotonic() < deadline:
            window = next((p for p in psutil.Process(agent.pid).children()
                           if "--settings" in p.cmdline()), None)
            time.sleep(0.2)
        assert window is not None, "the agent did not start the settings window"
        assert window.environ().get("LD_LIBRARY_PATH") == "/opt/users-own-libs"

        log = plugback_env.home / "logs" / "settings.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and window.is_running():
            if log.exists() and "settings page loaded (window mode; agent answering: yes)" in log.read_text():
                break
            time.sleep(0.3)
        assert window.is_running(), "the settings window exited"
        assert log.exists() and "window mode; agent answering: yes" in log.read_text(), log
        # The page's script ran; now WebKit must paint it (not a blank white window).
        deadline = time.monotonic() + 30
        while True:
            shot = screenshot("settings")
            painted = _painted_fraction(shot)
            if painted > 0.05 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert painted > 0.05, f"the settings window stayed blank: see {shot}"
    finally:
        if window is not None and window.is_running():
            window.terminate()
            psutil.wait_procs([window], timeout=20)
        if agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()


def _painted_fraction(png: Path) -> float:
    """Share of the screen that is neither the black root window nor a blank white page."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colors = rgb.getcolors(maxcolors=rgb.width * rgb.height)
        other = sum(count for count, color in colors if color not in ((0, 0, 0), (255, 255, 255)))
        return other / (rgb.width * rgb.height)


def _wait_for_agent(frozen_bin: Path, agent: subprocess.Popen, timeout: float = 30) -> dict:
    """The first ``plugback status --json`` reply in which the agent answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent.poll() is None:
        proc = _run(frozen_bin / "plugback", "status", "--json", timeout=30)
        if proc.returncode == 0 and json.loads(proc.stdout).get("agent"):
            return json.loads(proc.stdout)
        time.sleep(0.3)
    raise AssertionError(f"the frozen agent never answered status (exit code {agent.poll()})")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tarball_installs_for_one_user_and_uninstalls(build, plugback_env, tmp_path):
    import tarfile

    with tarfile.open(BUILD_DIST / build["tarball"]) as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    (folder,) = (tmp_path / "unpacked").iterdir()
    home = tmp_path / "user"
    env = subprocess_env({**FROZEN_ENV, "HOME": str(home)})
    data = Path(env["XDG_DATA_HOME"])

    proc = subprocess.run([str(folder / "install.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    version = subprocess.run([str(home / ".local" / "bin" / "plugback"), "--version"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"plugback {build['version']}"
    entry = (data / "applications" / "plugback.desktop").read_text()
    assert f"Exec={home}/.local/opt/plugback/plugback-tray" in entry
    assert (data / "icons" / "hicolor" / "48x48" / "apps" / "plugback.png").is_file()

    proc = subprocess.run([str(folder / "install.sh"), "--uninstall"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not (home / ".local" / "opt" / "plugback").exists()
    assert not (home / ".local" / "bin" / "plugback").is_symlink()
    assert not (data / "applications" / "plugback.desktop").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deb_removes_cleanly_and_leaves_user_data(installed, plugback_env, tmp_path):
    # Something a user would have: app state and a backup. Neither belongs to the package.
    home = make_tree(plugback_env.home, {"config.json": b"{}"})
    backup = _run(installed / "plugback", "backup", make_tree(tmp_path / "src", {"a.txt": b"a"}),
                  "--to", tmp_path / "set")
    assert backup.returncode == 0, backup.stderr
    proc = _dpkg("-r", PACKAGE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _installed_version() is None
    assert not Path("/opt/plugback").exists()
    assert not (installed / "plugback").exists() and not (installed / "plugback-tray").exists()
    assert not Path("/usr/share/applications/plugback.desktop").exists()
    assert (tmp_path / "set" / "plugback.json").is_file()
    assert (home / "config.json").read_bytes() == b"{}"
