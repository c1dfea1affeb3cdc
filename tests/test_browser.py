"""The real thing: ``streamlit run app.py`` driven by a headless system Chromium (Playwright).

Two browser tabs (two Streamlit sessions) open the home page and both press "Run the default
session" at once; each tab shows the live progress bar, both runs finish, the result charts are
drawn (plotly elements present) and no exception text appears. Skipped only where no Chromium is
installed (Debian: ``apt-get install chromium``); Playwright never downloads a browser here.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pruning.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: the default session takes seconds on an idle CPU; generous for a busy CI machine
RUN_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """``streamlit run app.py`` on a free port with a fresh PRUNING_HOME; yields (url, home)."""
    home = tmp_path / "home"
    env = dict(os.environ, PRUNING_HOME=str(home), PRUNING_DATA=str(tmp_path / "data"))
    port = free_port()
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if b"ok" in urllib.request.urlopen(url + "/_stcore/health", timeout=1).read():
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("streamlit did not start: "
                                       + (tmp_path / "streamlit.log").read_text()[-2000:])
                time.sleep(0.3)
        yield url, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium found (apt-get install chromium)")
def test_two_tabs_run_the_default_session_at_once(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
    url, home = server
    label = "Run the default session"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            tabs = [browser.new_context().new_page() for _ in range(2)]  # two sessions
            for tab in tabs:
                tab.set_default_timeout(60_000)
                tab.goto(url, wait_until="domcontentloaded")
                tab.get_by_role("button", name=label).wait_for()
            started = time.perf_counter()
            for tab in tabs:
                tab.get_by_role("button", name=label).click()
            for tab in tabs:  # each tab shows its own live progress while its run trains
                tab.locator("[data-testid='stProgress']").first.wait_for()
            for tab in tabs:
                tab.get_by_text("Run finished in").wait_for(timeout=RUN_TIMEOUT_S * 1000)
            elapsed = time.perf_counter() - started
            for tab in tabs:
                tab.locator(".js-plotly-plot").first.wait_for()
                assert tab.locator(".js-plotly-plot").count() >= 1  # the run's curves
                assert tab.locator("[data-testid='stException']").count() == 0
                assert "Traceback" not in tab.content()
                tab.get_by_text("Test accuracy").first.wait_for()
        finally:
            browser.close()
    runs = RunStore(home).list_runs()
    assert sorted(r.status for r in runs) == ["done", "done"]
    print(f"two default sessions in two tabs finished in {elapsed:.1f} s")
