"""The app's responsiveness, measured in a real browser (``python -m pruning bench --app``).

Starts ``streamlit run app.py`` on 127.0.0.1 with a scratch PRUNING_HOME holding generated runs
(1,000 by default, each with a summary and a few epoch rows), drives it with Playwright and the
system Chromium (never a browser download), and reports:

- ``first_session_ratio``: on the freshly started server, Home's default-session button → the
  result shown ("Run finished in"), divided by that run's own training-steps time (its
  ``time_breakdown_s["training"]``); ``first_session_s`` and ``first_session_training_s`` are the
  two times;
- ``live_update_interval_s``: during that run, the median time between visible changes of the
  live panel (progress text and metric tiles, sampled in the page every 20 ms);
- ``page_ready_s``: per page, load of its address → the script finished
  (``data-test-script-state`` of the app turns "notRunning") with the title shown;
- ``widget_settle_s``: per page, a choice in its first select box (a multiselect where it has
  none) → the rerun it causes has finished (None where a page has neither on first view);
- ``machine``: CPU count and load average before and after (the times are absolute: a busy
  machine makes them longer).

The launched library never imports Streamlit: the app runs in its own process.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: how Chromium is started: headless, no sandbox (containers), nothing fetched or synced
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
DEFAULT_BUTTON = "Run the default session"
#: the longest wait for one page to load or settle before its figure is reported as None
PAGE_TIMEOUT_S = 60.0
FINISHED_TEXT = "Run finished in"

# In-page probes (JavaScript). The app's root element carries Streamlit's script state; every
# change is logged with its time, so a rerun that starts and ends between two polls is seen.
_WATCH_STATE = """() => {
  if (window.__benchStates) return;
  window.__benchStates = [];
  const log = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    const state = app ? app.getAttribute('data-test-script-state') : null;
    const last = window.__benchStates[window.__benchStates.length - 1];
    if (!last || last[1] !== state) window.__benchStates.push([performance.now(), state]);
  };
  new MutationObserver(log).observe(document.documentElement,
      {subtree: true, attributes: true, attributeFilter: ['data-test-script-state'],
       childList: true});
  log();
}"""
_SETTLED_SINCE = """(since) => {
  const states = window.__benchStates || [];
  const ran = states.some(([t, s]) => t >= since && s === 'running');
  const last = states[states.length - 1];
  return ran && last && last[1] === 'notRunning';
}"""
_QUIET_FOR = """(ms) => {
  const states = window.__benchStates || [];
  const last = states[states.length - 1];
  return last && last[1] === 'notRunning' && performance.now() - last[0] >= ms;
}"""
_WATCH_LIVE = """() => {
  window.__benchLive = [];
  let previous = null;
  window.__benchLiveTimer = setInterval(() => {
    const parts = [...document.querySelectorAll(
        '[data-testid="stProgress"], [data-testid="stMetricValue"]')].map(e => e.innerText);
    const text = parts.join('|');
    if (parts.length && text !== previous) {
      window.__benchLive.push(performance.now());
      previous = text;
    }
  }, 20);
}"""
_READY = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-script-state') === 'notRunning'
      && document.querySelector('h1') !== null;
}"""


def generate_runs(home: Path, count: int, seed: int = 0) -> None:
    """``count`` finished runs with plausible summaries and three epoch rows each."""
    from pruning.config import RunConfig
    from pruning.store import RunStore

    rng = random.Random(seed)
    store = RunStore(home)
    methods = ("magnitude", "random", "snip", "synflow")
    schedules = ("one_cycle", "one_shot", "agp", "iterative")
    for i in range(count):
        sparsity = rng.choice((0.5, 0.7, 0.8, 0.9, 0.95))
        config = RunConfig(seed=i, method=rng.choice(methods), schedule=rng.choice(schedules),
                           sparsity=sparsity)
        run_id = store.create_run(config, {"device": "cpu"}, name=None)
        accuracy = max(0.1, 0.97 - sparsity ** 4 * rng.uniform(0.05, 0.3))
        for epoch in (1, 2, 3):
            store.add_epoch(run_id, {"epoch": epoch, "phase": "train", "step": epoch * 23,
                                     "train_loss": 1.5 / epoch, "train_acc": accuracy * epoch / 3,
                                     "test_loss": 1.6 / epoch, "test_acc": accuracy * epoch / 3,
                                     "target_sparsity": sparsity * epoch / 3,
                                     "mask_sparsity": sparsity * epoch / 3})
        store.finish_run(run_id, "done", {
            "test_acc": accuracy, "test_loss": 0.3, "train_acc": accuracy,
            "target_sparsity": sparsity, "mask_sparsity": sparsity,
            "effective_sparsity": sparsity * 0.95, "params_dense": 97_610,
            "params": 97_610, "params_nonzero": int(97_610 * (1 - sparsity)),
            "params_compact": int(97_610 * (1 - sparsity / 2)), "flops_dense": 3_000_000,
            "flops": int(3_000_000 * (1 - sparsity)), "flops_compact": 2_000_000,
            "epochs_done": 3, "steps_done": 69, "latency_ms": 0.5, "latency_p90_ms": 0.6,
            "latency_dense_ms": 0.7, "latency_batch_size": 64, "latency_device": "cpu",
            "duration_s": 5.0})
    store.close()


def _say(text: str) -> None:
    """Progress on stderr (stdout carries only the JSON)."""
    print(f"app bench: {text}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(home: Path, data: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PRUNING_HOME=str(home), PRUNING_DATA=str(data))
    port = _free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if b"ok" in urllib.request.urlopen(url + "/_stcore/health", timeout=1).read():
                return proc, url
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("streamlit did not start: "
                                   + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.2)


def _stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _load(page, url: str, timeout_s: float) -> float:
    """Seconds from navigating to ``url`` until its script finished with a title shown."""
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_function(_READY, timeout=timeout_s * 1000, polling=20)
    return time.perf_counter() - started


def _settle_after_select(page, timeout_s: float) -> float | None:
    """Seconds from choosing another option in the page's first select box that offers one (or,
    on a page without select boxes, in its first multiselect) until the rerun it triggers has
    finished; None if the page shows neither."""
    # only boxes on screen: those in a tab not shown or a closed expander cannot be clicked
    page.evaluate(_WATCH_STATE)
    # The browser draws the last widgets a moment after the script has finished, and a page may
    # rerun once more right after it is ready; a select box opened meanwhile is redrawn closed.
    # Wait until nothing has run for a moment, as a person reading the page would.
    page.wait_for_function(_QUIET_FOR, arg=300, timeout=timeout_s * 1000, polling=20)
    boxes = page.locator('[data-testid="stSelectbox"]:visible')
    if boxes.count() == 0:  # no select box: a multiselect's added choice is the same action
        boxes = page.locator('[data-testid="stMultiSelect"]:visible')
    for index in range(min(boxes.count(), 4)):
        boxes.nth(index).locator('[role="combobox"], input').first.click(
            timeout=timeout_s * 250)
        try:
            page.locator('[role="option"]').first.wait_for(timeout=timeout_s * 250)
        except Exception:  # this box did not open (disabled): try the next one
            page.keyboard.press("Escape")
            continue
        # a multiselect with every choice taken lists only "No results"
        others = page.locator('[role="option"]:not([aria-selected="true"])').filter(
            has_not_text="No results")
        if others.count() == 0:
            page.keyboard.press("Escape")
            # nothing to add: removing a choice from a multiselect changes it as well
            others = boxes.nth(index).locator('button[aria-label^="Remove "]')
            if others.count() == 0:  # a single choice: nothing to change
                continue
        since = page.evaluate("() => performance.now()")
        started = time.perf_counter()
        others.first.click()
        page.wait_for_function(_SETTLED_SINCE, arg=since, timeout=timeout_s * 1000, polling=10)
        return time.perf_counter() - started
    return None


def _measure(action) -> float | None:
    """``action()``'s seconds, or None (said on stderr) when it did not finish in time: one
    page that never settles must not hold up the others' figures."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return action()
    except PlaywrightTimeout as exc:
        _say(f"gave up waiting: {str(exc).splitlines()[0]}")
        return None


def _page_urls(page, base: str) -> dict[str, str]:
    """Every page of the app as {label: address}, from the sidebar's navigation links."""
    links = page.locator('[data-testid="stSidebarNav"] a')
    urls = {}
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href") or ""
        address = href if href.startswith("http") else base + "/" + href.lstrip("/")
        urls[address.rstrip("/").rsplit("/", 1)[-1] if address.rstrip("/") != base
             else "Home"] = address
    return urls or {"Home": base}


def _first_session(page, url: str, home: Path, timeout_s: float) -> dict[str, Any]:
    from pruning.store import RunStore

    _load(page, url, timeout_s)
    before = {r.id for r in RunStore(home).list_runs()}
    button = page.get_by_role("button", name=DEFAULT_BUTTON)
    button.wait_for(timeout=timeout_s * 1000)
    page.evaluate(_WATCH_LIVE)
    started = time.perf_counter()
    button.click()
    _say("default session started")
    page.get_by_text(FINISHED_TEXT).wait_for(timeout=timeout_s * 1000)
    _say("default session finished")
    elapsed = time.perf_counter() - started
    changes = page.evaluate("() => { clearInterval(window.__benchLiveTimer); "
                            "return window.__benchLive; }")
    new = [r for r in RunStore(home).list_runs() if r.id not in before]
    training = (new[0].summary.get("time_breakdown_s") or {}).get("training") if new else None
    # the live panel's changes while the run trained: drop the first (the panel appearing)
    gaps = [(b - a) / 1000.0 for a, b in zip(changes[1:], changes[2:])]
    return {"first_session_s": elapsed, "first_session_training_s": training,
            "first_session_ratio": elapsed / training if training else None,
            "live_update_interval_s": statistics.median(gaps) if gaps else None,
            "live_updates_seen": len(changes)}


def run_app_benchmark(runs: int = 1000, pages: int | None = None,
                      timeout_s: float = 300.0) -> dict[str, Any]:
    """All figures (see the module docstring). ``runs``: generated runs in the scratch store;
    ``pages``: measure only the first this many pages (None: all), for a short check."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("no system Chromium found; install it (apt-get install chromium)")
    result: dict[str, Any] = {"runs_in_store": runs, "machine": {"cpu_count": os.cpu_count()}}
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_1min_start"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="pruning-app-bench-") as scratch:
        home, data = Path(scratch) / "home", Path(scratch) / "data"
        started = time.perf_counter()
        generate_runs(home, runs)
        result["generate_runs_s"] = time.perf_counter() - started
        _say(f"{runs} runs generated; starting the server")
        proc, url = _start_server(home, data, Path(scratch) / "streamlit.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_FLAGS)
                try:
                    page = browser.new_context().new_page()
                    page.set_default_timeout(timeout_s * 1000)
                    result.update(_first_session(page, url, home, timeout_s))
                    urls = _page_urls(page, url)
                    chosen = list(urls.items())[:pages] if pages else list(urls.items())
                    ready, settle = {}, {}
                    for label, address in chosen:
                        ready[label] = _measure(lambda: _load(page, address, PAGE_TIMEOUT_S))
                        settle[label] = _measure(
                            lambda: _settle_after_select(page, PAGE_TIMEOUT_S))
                        _say(f"page {label}: ready {ready[label]} s, select box "
                             f"{settle[label]} s")
                    result["page_ready_s"] = ready
                    result["widget_settle_s"] = settle
                finally:
                    browser.close()
        finally:
            _stop_server(proc)
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    result["targets"] = {"first_session_ratio": "<= 1.5", "page_ready_s": "<= 1.0 each",
                         "widget_settle_s": "<= 0.5 each", "live_update_interval_s": "<= 0.5"}
    return result
