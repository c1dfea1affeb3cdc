"""Every view is a link: each page's choices are written to the URL, a link restores them.

For every page with a choice (``CASES``: the page, the widget, a non-default value, the query
parameter and its text), three AppTest checks: changing the widget writes the parameter into
``st.query_params``; opening the page with that parameter (a fresh session, as a shared link in a
fresh browser) shows the widget at that value; and a bad value gives one warning that names the
parameter and says what was used instead, while the page still renders. The codecs behind
``ui.state.linked`` are checked on exact values.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruning.config import RunConfig
from pruning.session import run_session
from pruning.store import RunStore
from ui import state

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120
#: a run that trains in about a second
TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)


@pytest.fixture(scope="module")
def link_store(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Tiny finished runs for every page: one-cycle and iterative magnitude (masks, schedules,
    trade-offs, speed lab, runs), ASWL (layer attention), i-SpaSP and SSC (methods)."""
    home = tmp_path_factory.mktemp("links-home")
    store = RunStore(home)
    ids = {}
    for name, config in (("one_cycle", TINY), ("iterative", TINY.replace(schedule="iterative")),
                         ("aswl", TINY.replace(method="aswl")),
                         ("aswl_seed1", TINY.replace(method="aswl", seed=1)),
                         ("ispasp", TINY.replace(method="ispasp")),
                         ("ssc", TINY.replace(method="ssc"))):
        run = run_session(config, store, measure_latency=False)
        assert run.status == "done", run.error
        ids[name] = run.id
    return home, ids


@pytest.fixture
def home(link_store, monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNING_HOME", str(link_store[0]))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return link_store[1]


def app(path: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def query(at: AppTest) -> dict[str, str]:
    return {k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()}


def healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


#: (page, widget kind, key, value set, query parameter, its text[, other parameters the widget
#: needs]); "{name}" is a run's id
CASES = [
    ("pages/2_Schedules.py", "multiselect", "sch-names", ["agp", "one_cycle"], "schedules",
     "agp,one_cycle"),
    ("pages/2_Schedules.py", "slider", "sch-final", 0.75, "final", "0.75"),
    ("pages/2_Schedules.py", "slider", "sch-initial", 0.1, "initial", "0.1"),
    ("pages/2_Schedules.py", "checkbox", "sch-custom", True, "one_window", "true"),
    ("pages/2_Schedules.py", "slider", "sch-window", (0.1, 0.6), "window", "0.1-0.6",
     {"one_window": "true"}),
    ("pages/2_Schedules.py", "slider", "sch-p.iterative.steps", 5, "iterative.steps", "5"),
    ("pages/2_Schedules.py", "selectbox", "sch-base", "{one_cycle}", "base", "{one_cycle}"),
    ("pages/2_Schedules.py", "multiselect", "sch-overlay", ["{iterative}"], "runs",
     "{iterative}"),
    ("pages/3_Layer_attention.py", "selectbox", "aswl-run", "{aswl}", "run", "{aswl}"),
    ("pages/4_Mask_evolution.py", "selectbox", "masks-a", "{iterative}", "left", "{iterative}"),
    ("pages/4_Mask_evolution.py", "selectbox", "masks-b", "{aswl}", "right", "{aswl}"),
    ("pages/4_Mask_evolution.py", "selectbox", "masks-layer", "conv3.0.weight", "layer",
     "conv3.0.weight"),
    ("pages/4_Mask_evolution.py", "select_slider", "masks-frame", 2, "frame", "2"),
    ("pages/5_Trade-offs.py", "multiselect", "to-filter-schedule", ["iterative"], "schedule",
     "iterative"),
    ("pages/5_Trade-offs.py", "multiselect", "to-filter-method", ["magnitude"], "method",
     "magnitude"),
    ("pages/5_Trade-offs.py", "selectbox", "to-sw-model", "mlp", "sweep.model", "mlp"),
    ("pages/5_Trade-offs.py", "number_input", "to-sw-epochs", 3, "sweep.epochs", "3"),
    ("pages/5_Trade-offs.py", "multiselect", "to-sw-schedules", ["agp", "iterative"],
     "sweep.schedules", "agp,iterative"),
    ("pages/5_Trade-offs.py", "text_input", "to-sw-sparsities", "0.5, 0.9", "sweep.sparsities",
     "0.5, 0.9"),
    ("pages/5_Trade-offs.py", "text_input", "to-sw-seeds", "0, 1", "sweep.seeds", "0, 1"),
    ("pages/5_Trade-offs.py", "checkbox", "to-sw-latency", False, "sweep.latency", "false"),
    ("pages/6_Methods.py", "toggle", "ispasp-relative", False, "ispasp.relative", "false"),
    ("pages/6_Methods.py", "selectbox", "ssc-layer", "conv3.0", "ssc.layer", "conv3.0",
     {"method": "SSC"}),  # only the open tab is drawn
    ("pages/7_Speed_lab.py", "selectbox", "speedlab-run", "{iterative}", "run", "{iterative}"),
    ("pages/7_Speed_lab.py", "multiselect", "speedlab-batches", [1, 32], "batches", "1,32"),
    ("pages/7_Speed_lab.py", "selectbox", "speedlab-layout", "channels_last", "layout",
     "channels_last"),
    ("pages/7_Speed_lab.py", "select_slider", "speedlab-seconds", 3.0, "seconds", "3"),
    ("pages/8_Runs.py", "multiselect", "runs-status", [], "status", ""),
    ("pages/8_Runs.py", "multiselect", "runs-compare-pick", ["{aswl}", "{iterative}"],
     "compare", "{aswl},{iterative}", {"tab": "Compare"}),
    ("pages/8_Runs.py", "selectbox", "runs-detail-pick", "{aswl}", "details", "{aswl}",
     {"tab": "Details & export"}),
]
CASES = [case if len(case) == 7 else (*case, {}) for case in CASES]  # + the link's other params
IDS = [f"{case[0].split('_', 1)[1][:-3]}-{case[4]}" for case in CASES]


def fill(value, ids: dict[str, str]):
    """``value`` with ``{name}`` replaced by the id of that run of the store."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


def widget(at: AppTest, kind: str, key: str):
    if kind == "session_state":  # a widget AppTest cannot drive (tabs): its state
        return type("State", (), {"value": at.session_state[key]})
    return getattr(at, kind)(key=key)


def test_every_page_with_a_choice_is_covered():
    pages = {case[0] for case in CASES}
    assert pages == {str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py")} - {
        "pages/1_Run.py"}  # the Run page has its own link of the whole RunConfig


@pytest.mark.parametrize("page, kind, key, value, param, text, given", CASES, ids=IDS)
def test_a_choice_is_written_to_the_url(home, page, kind, key, value, param, text, given):
    at = app(page, given)
    healthy(at)
    assert query(at).get(param) != fill(text, home), "the case's value must not be the default"
    widget(at, kind, key).set_value(fill(value, home)).run()
    healthy(at)
    assert query(at)[param] == fill(text, home)


@pytest.mark.parametrize("page, kind, key, value, param, text, given", CASES, ids=IDS)
def test_a_link_restores_the_choice(home, page, kind, key, value, param, text, given):
    at = app(page, {**given, param: fill(text, home)})
    healthy(at)
    assert not at.warning, [w.value for w in at.warning]
    shown = widget(at, kind, key).value
    assert (list(shown) if isinstance(value, (list, tuple)) else shown) == (
        list(fill(value, home)) if isinstance(value, (list, tuple)) else fill(value, home))
    assert query(at)[param] == fill(text, home)  # and the link stays as it was


#: (page, tabs key, a tab that is not the first, query parameter): the open tab is a choice too
TABS = [("pages/5_Trade-offs.py", "to-view", "Accuracy vs FLOPs", "view"),
        ("pages/6_Methods.py", "methods-tab", "Weight unification", "method"),
        ("pages/8_Runs.py", "runs-tab", "Compare", "tab")]


@pytest.mark.parametrize("page, key, label, param", TABS, ids=[t[3] for t in TABS])
def test_the_open_tab_is_written_to_the_url_and_restored(home, page, key, label, param):
    at = app(page)
    assert query(at)[param] != label
    at.session_state[key] = label  # what a click on the tab does
    at.run()
    healthy(at)
    assert query(at)[param] == label
    restored = app(page, {param: label})
    healthy(restored)
    assert restored.session_state[key] == label and not restored.warning


BAD = [
    ("pages/2_Schedules.py", "slider", "sch-final", "final", "1.5", 0.98, "outside 0–0.99"),
    ("pages/2_Schedules.py", "slider", "sch-final", "final", "nan", 0.98, "outside"),
    ("pages/2_Schedules.py", "slider", "sch-window", "window", "0.8-0.2", (0.2, 0.8),
     "starts after it ends"),
    ("pages/2_Schedules.py", "checkbox", "sch-custom", "one_window", "maybe", False,
     "not true or false"),
    ("pages/4_Mask_evolution.py", "selectbox", "masks-layer", "layer", "features.99",
     "conv2.0.weight", "not one of"),
    ("pages/5_Trade-offs.py", "number_input", "to-sw-epochs", "sweep.epochs", "2.5", None,
     "not a whole number"),
    ("pages/7_Speed_lab.py", "selectbox", "speedlab-run", "run", "no-such-run", None,
     "not one of"),
    ("pages/8_Runs.py", "session_state", "runs-tab", "tab", "Everything", "History",
     "not one of"),
]


@pytest.mark.parametrize("page, kind, key, param, text, default, reason", BAD,
                         ids=[f"{b[3]}={b[4]}" for b in BAD])
def test_a_bad_link_names_the_parameter_and_opens_with_the_default(home, page, kind, key, param,
                                                                   text, default, reason):
    fresh = app(page)
    at = app(page, {param: text})
    healthy(at)
    warnings = [w.value for w in at.warning if param in w.value]
    assert len(warnings) == 1, [w.value for w in at.warning]
    assert reason in warnings[0] and "the default instead" in warnings[0]
    shown, expected = widget(at, kind, key).value, widget(fresh, kind, key).value
    assert shown == expected
    if default is not None:
        assert (tuple(shown) if isinstance(shown, list) else shown) == default
    assert query(at)[param] != text  # the URL now holds what is shown


def test_a_link_keeps_the_known_runs_of_a_list_and_names_the_unknown(home):
    at = app("pages/8_Runs.py", {"tab": "Compare",
                                 "compare": f"{home['aswl']},gone-run,{home['ssc']}"})
    healthy(at)
    assert at.multiselect(key="runs-compare-pick").value == [home["aswl"], home["ssc"]]
    (warning,) = [w.value for w in at.warning]
    assert "compare" in warning and "gone-run" in warning and "the rest of it" in warning


def test_a_link_with_markup_is_shown_as_text(home):
    at = app("pages/2_Schedules.py", {"final": "![x](http://example.invalid/a.png)"})
    (warning,) = [w.value for w in at.warning]
    assert "\\]" in warning and "![x](" not in warning


def test_mask_film_opens_at_the_linked_frame(home):
    at = app("pages/4_Mask_evolution.py", {"frame": "2"})
    healthy(at)
    (chart,) = [c for c in at.get("plotly_chart") if c.proto.id.endswith("-masks-film")]
    import json

    figure = json.loads(chart.proto.spec)
    assert figure["layout"]["sliders"][0]["active"] == 2
    assert figure["data"][0]["z"] == figure["frames"][2]["data"][0]["z"]


# ---- the codecs ---------------------------------------------------------------------------------
def test_codecs_read_what_they_write_and_refuse_the_rest():
    assert state.number(0, 1).read("0.25") == (0.25, None)
    assert state.number(0, 1).read("inf")[0] is None
    assert state.number(1, 10, int).read("3") == (3, None)
    assert state.number(0, 1).write(0.5) == "0.5"
    assert state.span(0, 1).read("0.2-0.8") == ((0.2, 0.8), None)
    assert state.span(0, 1).write((0.2, 0.8)) == "0.2-0.8"
    assert state.span(0, 1).read("0.2")[0] is None
    assert state.choice([3.0, 6.0]).read("6") == (6.0, None)
    assert state.choices([1, 8, 32]).read("32,1") == ([32, 1], None)
    assert state.choices([1, 8]).read("") == ([], None)
    value, problem = state.choices([1, 8]).read("1,7")
    assert value == [1] and "'7'" in problem
    assert state.choices([1, 8]).read("7")[0] is None
    assert state.choices([1, 8, 32], limit=2).read("32,8,1") == ([32, 8], "more than 2 chosen")
    assert state.flag().read("TRUE") == (True, None) and state.flag().write(False) == "false"
    assert state.text(5).read("abcdef")[0] is None
