"""The app benchmark (``python -m pruning bench --app``) runs in a reduced mode and reports every
figure; its timings are never compared here (they belong to the benchmark's output)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pruning.app_bench import generate_runs
from pruning.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEYS = {"first_session_ratio", "first_session_s", "first_session_training_s", "page_ready_s",
        "widget_settle_s", "live_update_interval_s", "machine", "runs_in_store", "targets"}


def test_generated_runs_are_finished_runs_with_history(tmp_path):
    generate_runs(tmp_path, 5)
    store = RunStore(tmp_path)
    runs = store.list_runs()
    assert len(runs) == 5 and {r.status for r in runs} == {"done"}
    assert all(0 < r.summary["test_acc"] <= 1 for r in runs)
    assert [row["epoch"] for row in store.epochs(runs[0].id)] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium found (apt-get install chromium)")
def test_app_benchmark_reports_every_figure(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
    done = subprocess.run([sys.executable, "-m", "pruning", "bench", "--app", "--json",
                           "--runs", "20", "--pages", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert KEYS <= result.keys()
    assert result["runs_in_store"] == 20
    assert list(result["page_ready_s"]) == ["Home", "Run"]
    assert list(result["widget_settle_s"]) == ["Home", "Run"]
    assert result["widget_settle_s"]["Home"] is None  # Home has no select box
    # a figure is a number of seconds, or None where the page did not settle in time
    for figures in (result["page_ready_s"], result["widget_settle_s"]):
        assert all(v is None or v > 0 for v in figures.values())
    assert result["first_session_ratio"] > 0 and result["first_session_training_s"] > 0
    assert result["live_update_interval_s"] > 0 and result["live_updates_seen"] >= 2
    assert "load_average_1min_end" in result["machine"]
