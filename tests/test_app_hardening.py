"""The app under a damaged store, missing run files and hostile text (AppTest, headless).

- garbage over runs.db's first 4 KB: every page shows one error naming the file and a button;
  the button moves the file aside (kept byte for byte) and the page works on a fresh store;
- a damaged row: listed as damaged, the other runs still show;
- a run whose mask snapshot files are gone: Mask evolution names that run, the other still draws;
- Markdown and HTML in a URL value or a run name reach no banner, tooltip, label or chart as
  live syntax.
"""
from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruning.config import RunConfig
from pruning.session import run_session
from pruning.store import RunStore
from ui.charts import training
from ui.safe_text import escape_figure, md

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["app.py"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))
TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)
HOSTILE = "![t](http://host/x.png) <b>bold</b> :red[red] [link](http://host)"


def app(path: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """A store with two finished runs, the newer (which pickers open on) named with Markdown
    and HTML."""
    home = tmp_path_factory.mktemp("two-runs")
    store = RunStore(home)
    for schedule, name in (("iterative", None), ("one_cycle", HOSTILE)):
        run = run_session(TINY.replace(schedule=schedule), store, measure_latency=False,
                          name=name)
        assert run.status == "done", run.error
    store.close()
    return home


@pytest.fixture
def home_copy(two_runs, tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    shutil.copytree(two_runs, home)
    monkeypatch.setenv("PRUNING_HOME", str(home))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return home


@pytest.mark.parametrize("page", PAGES)
def test_unreadable_store_one_error_and_a_way_out(home_copy, page):
    db = home_copy / "runs.db"
    with open(db, "r+b") as f:
        f.write(b"garbage! " * 455 + b"x")  # 4096 bytes
    damaged = db.read_bytes()
    at = app(page)
    no_exception(at)
    assert len(at.error) == 1 and str(db) in at.error[0].value and "move it aside" in \
        at.error[0].value
    [button] = [b for b in at.button if b.key == "store-move-aside"]
    at = button.click().run()
    no_exception(at)
    assert not at.error
    assert any("moved to" in s.value for s in at.success)
    [kept] = home_copy.glob("runs.db.damaged-*")
    assert kept.read_bytes() == damaged
    assert not db.exists() or RunStore(home_copy).list_runs() == []


def test_damaged_row_listed_while_the_others_show(home_copy):
    store = RunStore(home_copy)
    bad, good = [r.id for r in store.list_runs()]
    db = sqlite3.connect(home_copy / "runs.db")
    db.execute("UPDATE runs SET summary = '{broken' WHERE id = ?", (bad,))
    db.commit()
    db.close()
    at = app("pages/8_Runs.py")
    no_exception(at)
    [warning] = at.warning
    assert bad in warning.value and "summary is not valid JSON" in warning.value
    assert good in at.dataframe[0].value["id"].tolist()
    assert bad not in at.dataframe[0].value["id"].tolist()


def test_mask_evolution_names_the_run_whose_snapshots_are_missing(home_copy):
    store = RunStore(home_copy)
    runs = store.list_runs()
    broken = runs[-1]  # the older run, one of the pair the page opens on
    for path in (store.run_dir(broken.id) / "masks").glob("*.npz"):
        path.unlink()
    at = app("pages/4_Mask_evolution.py")
    no_exception(at)
    assert len(at.error) == 1
    assert broken.id in at.error[0].value and "mask snapshot files" in at.error[0].value
    assert at.get("plotly_chart"), "the other run's film is still drawn"


def _texts(node, out: list[str]) -> list[str]:
    """Every Markdown-rendered string in an element tree: bodies, labels, help tooltips."""
    proto = getattr(node, "proto", None)
    if proto is not None:
        _proto_texts(proto, out)
    for child in getattr(node, "children", {}).values():
        _texts(child, out)
    return out


def _proto_texts(message, out: list[str]) -> None:
    for field, value in message.ListFields():
        if field.name in ("body", "label", "help", "caption") and isinstance(value, str):
            out.append(value)
        elif hasattr(value, "ListFields"):
            _proto_texts(value, out)


#: syntax that would render live: an unescaped link/image/directive closer, tag or autolink
LIVE = re.compile(r"(?<!\\)\]\(|(?<!\\)<b>|(?<!\\):red|(?<!\\)\]\s*$")


@pytest.mark.parametrize("page", PAGES)
def test_a_run_named_with_markdown_renders_nowhere_as_markup(home_copy, page):
    at = app(page)
    no_exception(at)
    texts = _texts(at._tree, [])
    assert texts
    live = [t for t in texts if LIVE.search(t)]
    assert live == []


@pytest.mark.parametrize("query", [{"model": HOSTILE}, {"method": HOSTILE},
                                   {"p.lam": HOSTILE, "method": "aswl"},
                                   {"schedule": HOSTILE}, {"sparsity": HOSTILE}])
def test_markdown_in_the_url_is_shown_as_text(home_copy, query):
    at = app("pages/1_Run.py", query)
    no_exception(at)
    assert at.error, "the bad value is reported"
    texts = _texts(at._tree, [])
    assert [t for t in texts if LIVE.search(t)] == []
    assert any("![t\\](http\\://host/x.png)" in e.value or "\\<b\\>" in e.value
               for e in at.error)


def test_md_leaves_plain_messages_readable_and_disarms_syntax():
    assert md("unknown model 'nope'; choose one of: mlp, small_cnn") == \
        "unknown model 'nope'; choose one of: mlp, small_cnn"
    assert md("sparsity must be in [0, 1), got 1.5") == "sparsity must be in [0, 1), got 1.5"
    assert md(HOSTILE) == ("![t\\](http\\://host/x.png) \\<b\\>bold\\</b\\> \\:red[red\\] "
                           "[link\\](http\\://host)")
    assert md("# title\n- item\n2. x") == "\\# title\n\\- item\n2\\. x"
    assert md("_a_ *b* `c` $d$ ~e~") == "\\_a\\_ \\*b\\* \\`c\\` \\$d\\$ \\~e\\~"


def test_chart_labels_escape_run_names():
    import pandas as pd

    frame = pd.DataFrame({"epoch": [1, 2, 1, 2], "test_acc": [0.5, 0.6, 0.4, 0.5],
                          "target_sparsity": [0.5, 0.9, 0.5, 0.9],
                          "mask_sparsity": [0.5, 0.9, 0.5, 0.9],
                          "run": ["<a href='http://x'>x</a>"] * 2 + ["plain"] * 2})
    fig = training.training_curves(frame)
    names = [t.name for t in fig.data if t.name]
    assert names and not any("<a" in n for n in names)
    assert any("&lt;a href='http://x'&gt;x&lt;/a&gt;" in n for n in names)
    assert escape_figure(fig) is fig


def test_runs_page_names_missing_files_and_offers_no_export_of_them(home_copy):
    store = RunStore(home_copy)
    newest = store.list_runs()[0]  # the one the pickers open on
    store.model_path(newest.id).unlink()
    at = app("pages/8_Runs.py", {"tab": "Details & export"})
    no_exception(at)
    warnings = [w.value for w in at.warning if newest.id in w.value]
    assert warnings and "files are incomplete: model.pt" in warnings[0]
    buttons = {b.proto.label: b.proto.disabled for b in at.get("download_button")}
    assert buttons["Compact model (.pt)"] and buttons["ONNX (compact)"]
    assert not buttons["Metrics (CSV)"]
