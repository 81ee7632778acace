"""Screenshots of every settings page, light and dark, for the README: docs/screenshots/*.png.

    .venv/bin/python -m tests.ui.make_screenshots [--out docs/screenshots]

Everything shown is real: a real agent (``plugback-tray --no-icon``) in a throwaway
PLUGBACK_HOME, real backups of generated folders to a loop-mounted ext4 drive
(a plain folder when this machine cannot mount one), pages in headless Chromium
through the browser-fallback server. Needs what the browser tests need.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from tests.support.env import isolated_env, repo_root

WIDTH, HEIGHT = 1100, 760
PAGES = [  # (file name, route, full page?)
    ("overview", "overview", False), ("jobs", "jobs", False), ("job-editor", "jobs/edit/Documents", True),
    ("drives", "drives", False), ("restore", "restore", False), ("history", "history", False),
    ("preferences", "prefs", False), ("first-run", "welcome", False),
]


def _demo_files(root: Path) -> dict[str, Path]:
    """Folders a person might back up, with plausible names and sizes."""
    docs, photos, music = root / "Documents", root / "Pictures", root / "Music"
    for rel, size in [("Taxes 2025/return.pdf", 182_000), ("Taxes 2025/receipts.ods", 41_000),
                      ("Thesis/thesis.odt", 820_000), ("Thesis/figures/plot-1.svg", 23_000),
                      ("Thesis/figures/plot-2.svg", 27_000), ("letter to landlord.odt", 16_000),
                      ("notes.md", 3_200), ("Recipes/bread.md", 2_100), ("build/cache.tmp", 90_000)]:
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_bytes(os.urandom(size))
    for i in range(120):
        (photos / f"2026/{i // 40 + 6:02d}").mkdir(parents=True, exist_ok=True)
        (photos / f"2026/{i // 40 + 6:02d}/IMG_{4100 + i}.jpg").write_bytes(os.urandom(60_000))
    return {"docs": docs, "photos": photos, "music": music}


def _destination(work: Path, stack):
    """A loop-mounted ext4 drive when possible, else a folder."""
    try:
        from tests.support.drives import LoopDrive

        drive = LoopDrive.create("ext4", work / "drive", size_mb=2048, label="BLUE")
        stack.append(drive.close)
        return drive.mount_point
    except Exception as err:  # noqa: BLE001 - screenshots still work with a folder destination
        print(f"no loop drive ({err}); backing up to a folder")
        return None


def make(out: Path) -> list[Path]:
    """Run the demo and write the PNGs into ``out``; returns their paths."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.ui.helpers import AgentProcess, wait_for
    from ui.api import Api, agent_request
    from ui.server import SettingsServer

    work = Path(tempfile.mkdtemp(prefix="pbshots-"))
    cleanup: list = []
    saved_env = dict(os.environ)
    os.environ.update(isolated_env(work / "env").vars)
    os.environ.pop("DISPLAY", None)
    # The pages show paths in the home folder as "~/…"; make the demo folders live there.
    os.environ["HOME"] = str(work / "home")
    written = []
    try:
        files = _demo_files(work / "home")
        mount = _destination(work, cleanup)
        agent = AgentProcess.start(work / "agent.log")
        cleanup.append(agent.stop)
        if mount is not None:
            drive_id = agent.call("drive_init", mount=str(mount), label="Blue USB")["drive_id"]
            wait_for(lambda: any(d["present"] for d in agent.call("status")["drives"]), 20, "the drive")
            dest = {"drive_id": drive_id}
        else:
            dest = {"path": str(work / "backups")}
        jobs = [
            {"name": "Documents", "sources": [str(files["docs"])], "destination": dest, "excludes": ["*.tmp", "build/"],
             "triggers": {"on_connect": True, "schedule": "daily@12:00", "min_interval_minutes": 0},
             "retention": {"keep_last": 10}},
            {"name": "Photos", "sources": [str(files["photos"])], "destination": dest,
             "triggers": {"on_connect": True, "schedule": None, "min_interval_minutes": 0}},
            {"name": "Music", "sources": [str(files["music"])], "destination": dest,
             "triggers": {"on_connect": False, "schedule": "sun@20:00", "min_interval_minutes": 0}},
        ]
        for job in jobs:
            agent.call("job_save", job=job)
        for job in jobs[:2]:
            agent.wait_idle(job["name"]) if agent.job(job["name"])["last_run"] else agent.backup(job["name"])
        # History with a failed run: the Music folder did not exist yet.
        agent.call("run_job", name="Music")
        wait_for(lambda: (agent.job("Music")["last_run"] or {}).get("status") == "failed", 30, "the failed run")
        files["music"].mkdir()
        (files["music"] / "album.flac").write_bytes(os.urandom(300_000))
        agent.backup("Music")
        (files["docs"] / "notes.md").write_text("# Notes\nRemember to back up.\n")
        agent.backup("Documents")

        server = SettingsServer(Api(agent_request(agent.paths), mode="browser"))
        server.start()
        cleanup.append(server.shutdown)
        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            for scheme in ("light", "dark"):
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, color_scheme=scheme)
                for name, route, full in PAGES:
                    page.goto(f"{server.url}#{route}")
                    page.wait_for_selector("html[data-ready='true']")
                    if name == "restore":
                        page.get_by_role("button", name="Open folder Documents").click()
                        page.get_by_role("button", name="Open folder Thesis").click()
                        page.get_by_label("Select thesis.odt").check()
                    page.wait_for_timeout(700)
                    path = out / f"{name}-{scheme}.png"
                    page.screenshot(path=str(path), full_page=full)
                    written.append(path)
                # Overview while a backup runs: add photos and catch the progress bar mid-run
                # (a status poll lands about once a second; try a few runs if one is missed).
                page.goto(f"{server.url}#overview")
                page.wait_for_selector("[data-job='Photos']")
                for attempt in range(3):
                    batch = files["photos"] / "2026" / f"{scheme}-{attempt}"
                    batch.mkdir(parents=True)
                    for i in range(1500):
                        (batch / f"IMG_{i:04d}.jpg").write_bytes(os.urandom(100_000))
                    agent.call("run_job", name="Photos")
                    try:
                        page.wait_for_function("""() => {
                            const b = document.querySelector("[data-job='Photos'] [role=progressbar]");
                            const v = b && b.offsetParent && Number(b.getAttribute('aria-valuenow'));
                            return v > 3 && v < 97; }""",
                                               timeout=10000)
                    except Exception:  # noqa: BLE001 - missed it: try again with another run
                        agent.wait_idle("Photos", 120)
                        continue
                    path = out / f"overview-running-{scheme}.png"
                    page.screenshot(path=str(path))
                    written.append(path)
                    agent.wait_idle("Photos", 120)
                    break
                else:
                    print(f"could not catch a running backup ({scheme})")
                page.close()
            browser.close()
        return written
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as err:  # noqa: BLE001 - clean up what we can
                print(f"cleanup: {err}")
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=repo_root() / "docs" / "screenshots")
    args = parser.parse_args()
    for path in make(args.out):
        print(path)


if __name__ == "__main__":
    main()
