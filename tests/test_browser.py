"""The real thing: ``streamlit run app.py`` driven by a headless system Chromium (Playwright).

The home page's "Run the default session" trains with a live progress bar, finishes, draws its
charts (plotly elements present) and shows no exception text; and (slow) two browser tabs, two
Streamlit sessions, press it at once and both runs finish, overlapping in time. Skipped only where no Chromium is
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
#: the default session takes about 20 s on an idle 2-core CPU; generous for a busy machine
RUN_TIMEOUT_S = 300


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


def run_default_session(browser, url: str, tabs: int) -> float:
    """Open ``tabs`` sessions on the home page, press the default-run button in each at once,
    wait for every run to finish and check what each tab shows; returns the seconds it took."""
    label = "Run the default session"
    pages = [browser.new_context().new_page() for _ in range(tabs)]  # one session each
    for page in pages:
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_role("button", name=label).wait_for()
    started = time.perf_counter()
    for page in pages:
        page.get_by_role("button", name=label).click()
    for page in pages:  # each tab shows its own live progress while its run trains
        page.locator("[data-testid='stProgress']").first.wait_for()
    for page in pages:
        page.get_by_text("Run finished in").wait_for(timeout=RUN_TIMEOUT_S * tabs * 1000)
    elapsed = time.perf_counter() - started
    for page in pages:
        page.locator(".js-plotly-plot").first.wait_for()
        assert page.locator(".js-plotly-plot").count() >= 1  # the run's curves
        page.get_by_text("Sparsity", exact=True).first.wait_for()  # the result's metric tiles
        assert page.locator("[data-testid='stException']").count() == 0
        assert "Traceback" not in page.content()
    return elapsed


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright package is missing")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium found (apt-get install chromium)")
def test_home_default_session_in_a_real_browser(server, browser):
    url, home = server
    elapsed = run_default_session(browser, url, tabs=1)
    runs = RunStore(home).list_runs()
    assert [r.status for r in runs] == ["done"]
    assert runs[0].summary["mask_sparsity"] == pytest.approx(0.9, abs=1e-3)
    print(f"default session in the browser: {elapsed:.1f} s")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium found (apt-get install chromium)")
def test_two_tabs_train_at_once(server, browser):
    url, home = server
    elapsed = run_default_session(browser, url, tabs=2)
    runs = RunStore(home).list_runs()
    assert sorted(r.status for r in runs) == ["done", "done"]
    first, second = sorted(runs, key=lambda r: r.created)
    assert second.created < first.finished  # they overlapped: neither waited for the other
    print(f"two default sessions in two tabs: {elapsed:.1f} s")
