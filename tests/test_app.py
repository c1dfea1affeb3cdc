"""The Streamlit app, driven headless with ``streamlit.testing.v1.AppTest``.

Every page (app.py and each file in pages/, found by glob so new pages are covered) renders
without an exception both on an empty store and on a store with finished runs; the main widgets
exist; the home page's default run trains in the background, completes and shows up on the Runs
page; Stop ends a run cleanly; two sessions' runs train at once; bad input (a bad link, a bad
value) shows ``st.error`` instead of a traceback. The pure helpers (query parameters, Pareto
front, sparsity frame, forms from dataclasses, jobs) are checked on exact values.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from functools import partial
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pruning.compare import noise_aware_front
from pruning.config import ConfigError, RunConfig
from pruning.session import run_session
from pruning.store import RunStore
from pruning.training import Event
from ui import forms, jobs, live, pickers
from ui.charts import sparsity, training

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["app.py"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))
TIMEOUT = 120
#: a run that trains in about a second: 4 steps per epoch
TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)


def app(path: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def wait_for_jobs(timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    for job in live.manager().running():
        assert job.wait(max(0.1, deadline - time.time())), "a background job did not finish"


@pytest.fixture(scope="session")
def finished_store(tmp_path_factory) -> Path:
    """A store with two small finished runs (one-cycle and iterative, same model and seed)."""
    home = tmp_path_factory.mktemp("finished-home")
    store = RunStore(home)
    for schedule in ("one_cycle", "iterative"):
        run = run_session(TINY.replace(schedule=schedule), store, measure_latency=False)
        assert run.status == "done", run.error
    return home


@pytest.fixture
def empty_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRUNING_HOME", str(home))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return home


@pytest.fixture
def full_home(finished_store, monkeypatch, tmp_path) -> Path:
    """PRUNING_HOME -> the shared finished store (read-only use)."""
    monkeypatch.setenv("PRUNING_HOME", str(finished_store))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return finished_store


@pytest.fixture
def own_copy(finished_store, monkeypatch, tmp_path) -> Path:
    """A private copy of the finished store, for tests that change it."""
    home = tmp_path / "home"
    shutil.copytree(finished_store, home)
    monkeypatch.setenv("PRUNING_HOME", str(home))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return home


@pytest.fixture
def tiny_default(monkeypatch):
    """The home page's "default session" button trains TINY instead (seconds, same code path)."""
    monkeypatch.setattr(live, "default_config", lambda: TINY)
    yield
    wait_for_jobs()


# ---- every page renders -----------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_empty_store(page, empty_home):
    at = app(page)
    no_exception(at)
    assert at.title and at.title[0].value, "every page has a title"
    assert not at.error, [e.value for e in at.error]
    # an empty page says what to run to fill it, with a button to do so
    assert at.button, "no button to start something on an empty store"
    assert not (empty_home / "runs.db").exists() or not RunStore(empty_home).list_runs()


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_finished_runs(page, full_home):
    at = app(page)
    no_exception(at)
    assert at.title and at.title[0].value
    assert not at.error, [e.value for e in at.error]


# ---- home -------------------------------------------------------------------------------------
def test_home_has_the_default_run_button_and_explains_pruning(empty_home):
    at = app("app.py")
    labels = [b.label for b in at.button]
    assert live.DEFAULT_SESSION_LABEL in labels
    assert any("mask" in m.value and "sparsity" in m.value for m in at.markdown)


def test_home_default_run_completes_and_appears_on_runs(empty_home, tiny_default):
    at = app("app.py")
    at.button(key="home-run").click().run()
    no_exception(at)
    job_id = at.session_state["job:home"]
    job = live.manager().get(job_id)
    assert job is not None
    assert job.wait(TIMEOUT)
    at.run()  # what the fragment's st.rerun() does in the browser
    no_exception(at)
    assert [s.value for s in at.success] and "finished" in at.success[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sparsity"] == "90.0%"
    # a fifth of the page holds about eight characters of a tile's value: none is cut off
    assert all(len(v) <= 8 for v in metrics.values()), metrics
    assert metrics["Nonzero parameters"].endswith(" k")  # thousands, not "11,818 / 99,3…"
    run_id = job.progress().run_id
    run = RunStore(empty_home).get_run(run_id)
    assert run.status == "done" and run.config == TINY
    runs_page = app("pages/8_Runs.py")
    no_exception(runs_page)
    history = runs_page.dataframe[0].value
    assert list(history["id"]) == [run_id]
    assert history["status"].tolist() == ["done"]


def test_two_sessions_train_at_once(empty_home, tiny_default, monkeypatch):
    monkeypatch.setattr(live, "default_config", lambda: TINY.replace(epochs=10))
    first, second = app("app.py"), app("app.py")
    first.button(key="home-run").click().run()
    second.button(key="home-run").click().run()
    a = live.manager().get(first.session_state["job:home"])
    b = live.manager().get(second.session_state["job:home"])
    assert a.id != b.id
    assert a.wait(TIMEOUT) and b.wait(TIMEOUT)
    # they trained at the same time: the second started before the first finished
    assert b.progress().started < a.progress().finished
    runs = RunStore(empty_home).list_runs()
    assert sorted(r.status for r in runs) == ["done", "done"]
    assert {a.progress().run_id, b.progress().run_id} == {r.id for r in runs}


# ---- Run page ---------------------------------------------------------------------------------
def test_run_page_widgets(empty_home):
    at = app("pages/1_Run.py")
    labels = {s.label for s in at.selectbox}
    assert {"model", "dataset", "method", "schedule", "device"} <= labels
    assert at.selectbox(key="run.model").value == "small_cnn"
    assert at.number_input(key="run.sparsity").value == pytest.approx(0.9)
    assert at.button(key="run-start").label == "Run"
    assert len(at.get("plotly_chart")) == 1  # the schedule preview


@pytest.mark.parametrize("query, needle", [({"model": "nope"}, "unknown model 'nope'"),
                                           ({"sparsity": "1.5"}, "sparsity must be in [0, 1)"),
                                           ({"epochs": "many"}, "epochs: cannot read 'many'")])
def test_run_page_bad_link_shows_error_and_keeps_the_rest(empty_home, query, needle):
    at = app("pages/1_Run.py", {**query, "seed": "7"})
    no_exception(at)
    assert at.error and needle in at.error[0].value
    assert at.selectbox(key="run.model").value == "small_cnn"
    assert at.number_input(key="run.sparsity").value == pytest.approx(0.9)
    assert at.number_input(key="run.epochs").value == 12
    assert at.number_input(key="run.seed").value == 7  # the valid part of the link applies


def test_run_page_link_reproduces_setup(empty_home):
    config = RunConfig(model="lenet5", method="synflow", schedule="iterative",
                       schedule_params={"steps": 4},
                       sparsity=0.7, epochs=3, seed=5, granularity="nm", nm_n=1, nm_m=4,
                       method_params={"iterations": 10})
    at = app("pages/1_Run.py", forms.config_to_query(config))
    no_exception(at)
    assert not at.error
    assert at.selectbox(key="run.model").value == "lenet5"
    assert at.selectbox(key="run.method").value == "synflow"
    assert at.number_input(key="run.s.iterative.steps").value == 4
    assert at.number_input(key="run.p.synflow.iterations").value == 10
    assert at.number_input(key="run.nm_n").value == 1
    # and the page writes the same setup back into the URL
    assert forms.config_from_query(dict(at.query_params)) == (config, [])


def test_run_page_writes_choices_into_the_url(empty_home):
    at = app("pages/1_Run.py")
    at.number_input(key="run.epochs").set_value(4).run()
    at.selectbox(key="run.schedule").set_value("agp").run()
    no_exception(at)
    config, problems = forms.config_from_query(dict(at.query_params))
    assert problems == []
    assert (config.epochs, config.schedule) == (4, "agp")


def test_run_page_bad_value_shows_error_and_disables_run(empty_home):
    at = app("pages/1_Run.py")
    at.number_input(key="run.initial_sparsity").set_value(0.95).run()
    no_exception(at)
    assert any("initial sparsity" in e.value for e in at.error)
    assert at.button(key="run-start").disabled


def test_run_page_trains_and_stop_ends_cleanly(empty_home):
    at = app("pages/1_Run.py", {"epochs": "200", "max_train_samples": "128",
                                "batch_size": "64"})
    at.button(key="run-start").click().run()
    no_exception(at)
    job = live.manager().get(at.session_state["job:run"])
    store = RunStore(empty_home)
    deadline = time.time() + TIMEOUT
    while not (job.progress().run_id and store.epochs(job.progress().run_id)):
        assert time.time() < deadline and job.is_alive()
        time.sleep(0.05)
    at.run()  # the panel now shows the Stop button (and live curves)
    assert at.button(key="run-stop").label == "Stop"
    at.button(key="run-stop").click().run()
    assert job.wait(TIMEOUT)
    at.run()
    no_exception(at)
    run = store.get_run(job.progress().run_id)
    assert run.status == "stopped" and job.progress().status == "stopped"
    assert 1 <= len(store.epochs(run.id)) < 200  # the history is kept
    assert any("stopped" in w.value for w in at.warning)


# ---- Runs, Trade-offs, Schedules --------------------------------------------------------------
def test_runs_page_compares_two_runs(full_home):
    at = app("pages/8_Runs.py", {"tab": "Compare"})
    no_exception(at)
    runs = RunStore(full_home).list_runs()
    picker = at.multiselect(key="runs-compare-pick")
    assert picker.value == [r.id for r in runs]
    table = at.dataframe[0].value  # the open tab's only table (the history is not drawn)
    assert list(table.columns) == [pickers.run_title(r) for r in runs]
    assert table.loc["mask sparsity"].tolist() == ["90.0%", "90.0%"]
    at.session_state["runs-tab"] = "Details & export"  # what a click on the tab does
    at.run()
    assert len(at.get("download_button")) == 4


def test_runs_page_history_shows_removed_fraction_for_runs_without_mask(empty_home):
    # i-SpaSP and SSC remove channels instead of masking: their summary has no mask sparsity,
    # so the history's sparsity column shows the fraction of parameters removed instead
    store = RunStore(empty_home)
    masked = store.create_run(TINY)
    store.finish_run(masked, "done", {"mask_sparsity": 0.9, "effective_sparsity": 0.1})
    removed = store.create_run(TINY.replace(method="ispasp"))
    store.finish_run(removed, "done", {"mask_sparsity": None, "effective_sparsity": 0.55})
    at = app("pages/8_Runs.py")
    no_exception(at)
    history = at.dataframe[0].value.set_index("id")
    assert history.loc[removed, "sparsity"] == pytest.approx(0.55)
    assert history.loc[masked, "sparsity"] == pytest.approx(0.9)
    assert "mask_sparsity" not in history.columns  # one column, not an empty one beside it
    # the heading says which measure it is
    heading = json.loads(at.dataframe[0].proto.columns)["sparsity"]["label"]
    assert heading == "sparsity (mask, or parameters removed)"


def test_runs_page_report_says_where_the_time_went(full_home):
    at = app("pages/8_Runs.py", {"tab": "Details & export"})
    no_exception(at)
    where = [c.value for c in at.caption if c.value.startswith("Where the time went")]
    assert where, [c.value for c in at.caption]
    assert "training steps" in where[0] and "evaluation after each epoch" in where[0]


def test_runs_page_deletes_a_run(own_copy):
    store = RunStore(own_copy)
    victim = store.list_runs()[0]
    at = app("pages/8_Runs.py", {"tab": "Rename / delete"})
    at.selectbox(key="runs-manage-pick").set_value(victim.id).run()
    assert at.button(key="runs-delete").disabled  # needs the confirmation first
    at.checkbox(key=f"runs-del-ok-{victim.id}").check().run()
    at.button(key="runs-delete").click().run()
    no_exception(at)
    assert victim.id not in {r.id for r in store.list_runs()}
    assert not store.run_dir(victim.id).exists()


def test_tradeoffs_page_draws_front_and_filters(full_home):
    at = app("pages/5_Trade-offs.py")
    no_exception(at)
    assert len(at.get("plotly_chart")) == 1  # only the open view is drawn: weights kept
    at.session_state["to-view"] = "Accuracy vs FLOPs"  # what a click on the tab does
    at.run()
    assert len(at.get("plotly_chart")) == 1 and not at.info
    at.session_state["to-view"] = "Accuracy vs latency"
    at.run()
    assert not at.get("plotly_chart")  # no latency was measured: the view says so instead
    assert any("latency" in i.value for i in at.info)
    at.multiselect(key="to-filter-schedule").set_value([]).run()
    assert any("No run matches" in i.value for i in at.info)


def test_tradeoffs_sweep_runs_in_background(empty_home):
    at = app("pages/5_Trade-offs.py")
    at.number_input(key="to-sw-epochs").set_value(1).run()
    at.text_input(key="to-sw-sparsities").input("0.5, 0.8").run()
    at.text_input(key="to-sw-seeds").input("0").run()
    at.checkbox(key="to-sw-latency").uncheck().run()
    at.button(key="to-sweep").click().run()
    no_exception(at)
    job = live.manager().get(at.session_state["job:tradeoffs"])
    assert job.progress().count == 2
    assert job.wait(TIMEOUT)
    at.run()
    no_exception(at)
    runs = RunStore(empty_home).list_runs()
    assert sorted(r.config.sparsity for r in runs) == [0.5, 0.8]
    assert len(at.get("plotly_chart")) == 1  # the open view of the trade-offs


def test_tradeoffs_bad_sweep_shows_error(empty_home):
    at = app("pages/5_Trade-offs.py")
    at.text_input(key="to-sw-sparsities").input("0.5, lots").run()
    assert at.error and "target sparsities" in at.error[0].value
    assert at.button(key="to-sweep").disabled


def test_schedules_page_curves_follow_the_sliders(empty_home):
    at = app("pages/2_Schedules.py")
    chart = at.get("plotly_chart")[0]
    assert "one_cycle" in chart.proto.spec and "agp" in chart.proto.spec
    at.multiselect(key="sch-names").set_value(["iterative"]).run()
    at.slider(key="sch-p.iterative.steps").set_value(5).run()
    no_exception(at)
    spec = at.get("plotly_chart")[0].proto.spec
    assert "iterative" in spec and "one_cycle" not in spec
    # each chosen schedule is trained over the comparison's three seeds
    assert any("once per chosen schedule and seed (0, 1, 2)" in c.value and "3 run(s)" in c.value
               for c in at.caption)


def test_schedules_page_overlays_runs_differing_in_schedule(full_home):
    at = app("pages/2_Schedules.py")
    runs = RunStore(full_home).list_runs()
    assert set(at.multiselect(key="sch-overlay").value) == {r.id for r in runs}
    assert len(at.get("plotly_chart")) == 2  # the curves and the overlay


# ---- helpers ----------------------------------------------------------------------------------
def test_query_roundtrip_only_writes_changes():
    assert forms.config_to_query(RunConfig()) == {}
    config = RunConfig(sparsity=0.95, prune_first_last=True, window_start=0.1, window_end=0.7,
                       method="grasp", method_params={"temperature": 50.0})
    query = forms.config_to_query(config)
    assert query == {"method": "grasp", "prune_first_last": "true", "sparsity": "0.95",
                     "window_start": "0.1", "window_end": "0.7", "p.temperature": "50"}
    assert forms.config_from_query(query) == (config, [])


def test_query_problems_are_named_and_skipped():
    config, problems = forms.config_from_query(
        {"model": "nope", "seed": "x", "epochs": "3", "window_start": "0.8", "window_end": "0.2",
         "unrelated": "kept out"})
    assert config == RunConfig(epochs=3)
    assert [p.split(":")[0].split("=")[0] for p in problems] == [
        "seed", "model", "window_start and window_end"]


def test_cli_command_reproduces_config():
    config = RunConfig(epochs=3, prune_first_last=True, method="synflow",
                       method_params={"iterations": 10})
    assert forms.cli_command(config) == ("python -m pruning run --method synflow "
                                         "--prune-first-last --param iterations=10 --epochs 3")


def test_pareto_front_exact_without_noise():
    # with no error bars the noise-aware front the page draws is the ordinary one
    front = partial(noise_aware_front, x_error=None, y_error=None)
    df = pd.DataFrame({"x": [0.5, 0.8, 0.9, 0.7, 0.9], "y": [0.99, 0.97, 0.90, 0.95, 0.85]})
    assert front(df, "x", "y", x_higher_better=True).index.tolist() == [0, 1, 2]
    # lower x better (FLOPs): the cheapest run is on the front, and whatever beats it in y
    assert front(df, "x", "y", x_higher_better=False).index.tolist() == [0]
    cost = pd.DataFrame({"x": [1.0, 2.0, 3.0, 2.5], "y": [0.5, 0.8, 0.9, 0.7]})
    assert front(cost, "x", "y", x_higher_better=False).index.tolist() == [0, 1, 2]


def test_sparsity_frame_side_by_side():
    summary = {"target_sparsity": 0.9, "mask_sparsity": 0.9, "effective_sparsity": 0.25,
               "params_nonzero": 20, "params_dense": 100, "flops": 30, "flops_dense": 120,
               "flops_compact": 60}
    frame = sparsity.sparsity_frame({"r": summary}).set_index("kind")["value"]
    assert frame.to_dict() == pytest.approx({
        "target sparsity": 0.9, "mask sparsity": 0.9, "effective sparsity": 0.25,
        "all params zero": 0.8, "FLOPs skipped (mask)": 0.75, "FLOPs removed physically": 0.5})


def test_training_curves_one_colour_per_run():
    rows = pd.DataFrame({"epoch": [1, 2, 1, 2], "test_acc": [0.5, 0.6, 0.4, 0.7],
                         "target_sparsity": [0.5, 0.9] * 2, "mask_sparsity": [0.5, 0.9] * 2,
                         "run": ["a", "a", "b", "b"]})
    fig = training.training_curves(rows)
    assert len(fig.data) == 6  # accuracy, target, mask per run
    colours = {t.legendgroup: set() for t in fig.data}
    for t in fig.data:
        colours[t.legendgroup].add(t.line.color)
    assert all(len(c) == 1 for c in colours.values())
    assert colours["a"] != colours["b"]


def _form_script():
    # AppTest runs this function's body as a script, so it holds its own imports and dataclass.
    import dataclasses
    from typing import Literal

    import streamlit as st

    from ui import forms

    @dataclasses.dataclass(frozen=True)
    class Settings:
        flag: bool = True
        count: int = 3
        rate: float = 0.5
        mode: Literal["fast", "slow"] = "slow"
        name: str = "x"
        block: tuple = (1, 4)

    try:
        values = forms.dataclass_widgets(Settings, key="f")
        st.session_state["values"] = values
        st.session_state["defaults"] = dataclasses.asdict(Settings())
    except forms.ConfigError as exc:
        st.error(str(exc))


def test_dataclass_widgets_by_field_type():
    at = AppTest.from_function(_form_script, default_timeout=TIMEOUT).run()
    no_exception(at)
    assert at.checkbox(key="f.flag").value is True
    assert at.number_input(key="f.count").value == 3
    assert at.number_input(key="f.rate").value == 0.5
    assert at.selectbox(key="f.mode").options == ["fast", "slow"]
    assert at.text_input(key="f.block").value == "1x4"
    assert at.session_state["values"] == at.session_state["defaults"]
    at.text_input(key="f.block").input("2x8").run()
    assert at.session_state["values"]["block"] == (2, 8)
    at.text_input(key="f.block").input("two by eight").run()
    assert at.error and "1x4" in at.error[0].value


def test_job_progress_stop_and_limit(tmp_path):
    release = threading.Event()

    def runner(config, store, on_event, should_stop, name, measure_latency):
        run_id = store.create_run(config)
        on_event(Event("created", 0, 0, {"run_id": run_id}))  # as run_session does
        for step in range(1, 1000):
            on_event(Event("train", step, 1000, {"epoch": 1, "loss": 1.0 / step}))
            if should_stop():
                store.finish_run(run_id, "stopped")
                return store.get_run(run_id)
            release.wait(0.01)
        store.finish_run(run_id, "done")
        return store.get_run(run_id)

    manager = jobs.JobManager(jobs.JobLimits(max_jobs=1))
    store = RunStore(tmp_path)
    job = manager.submit(jobs.Job([TINY, TINY], store, kind="sweep", runner=runner))
    deadline = time.time() + 10
    while job.progress().step < 3:
        assert time.time() < deadline
        time.sleep(0.01)
    p = job.progress()
    assert p.running and p.index == 1 and p.count == 2 and p.run_id
    assert 0 < p.fraction < 0.5
    with pytest.raises(ConfigError, match="already training"):
        manager.submit(jobs.Job([TINY], store, runner=runner))
    job.stop()
    assert job.wait(10)
    p = job.progress()
    assert p.status == "stopped" and len(p.run_ids) == 1 and p.fraction == 1.0
    assert store.get_run(p.run_id).status == "stopped"


def test_start_run_refuses_bad_config_before_starting(tmp_path):
    before = len(live.manager().running())
    with pytest.raises(ConfigError, match="sparsity"):
        live.start_run(RunConfig(sparsity=1.5), RunStore(tmp_path))
    with pytest.raises(ConfigError):
        live.start_sweep([TINY, TINY.replace(model="nope")], RunStore(tmp_path))
    assert len(live.manager().running()) == before
    assert not (tmp_path / "runs.db").exists()


def test_run_page_keeps_hidden_choices(empty_home):
    at = app("pages/1_Run.py")
    at.number_input(key="run.s.one_cycle.alpha").set_value(9.0).run()
    at.selectbox(key="run.schedule").set_value("iterative").run()  # α is hidden now
    at.selectbox(key="run.schedule").set_value("one_cycle").run()
    no_exception(at)
    assert at.number_input(key="run.s.one_cycle.alpha").value == 9.0
    at.selectbox(key="run.granularity").set_value("nm").run()
    assert (at.number_input(key="run.nm_n").value, at.number_input(key="run.nm_m").value) == (2, 4)
    # 2:4 cannot reach the 90 % target: the page says so and will not start
    assert any("at most 50%" in e.value for e in at.error)
    assert at.button(key="run-start").disabled


def test_job_reports_errors_instead_of_hanging(tmp_path):
    def broken(config, store, **kwargs):
        raise RuntimeError("boom")

    store = RunStore(tmp_path)
    job = jobs.Job([TINY, TINY], store, kind="sweep", runner=broken).start()
    assert job.wait(10)
    p = job.progress()
    assert (p.status, p.statuses, p.error) == ("failed", ("failed", "failed"), "RuntimeError: boom")
    # a failure outside the runs (here: an impossible thread count) still ends the job
    job = jobs.Job([TINY], store, threads=-1, runner=broken).start()
    assert job.wait(10)
    assert job.progress().status == "failed" and not job.progress().running


def test_job_progress_never_goes_back(tmp_path):
    seen, release = [], threading.Event()

    def runner(config, store, on_event, **kwargs):
        run_id = store.create_run(config)
        on_event(Event("created", 0, 0, {"run_id": run_id}))
        on_event(Event("train", 3, 4, {"epoch": 1}))
        on_event(Event("measure", 0, 1, {"message": "measuring FLOPs and latency"}))
        seen.append(True)
        release.wait(10)
        store.finish_run(run_id, "done")
        return store.get_run(run_id)

    job = jobs.Job([TINY, TINY], RunStore(tmp_path), kind="sweep", runner=runner).start()
    deadline = time.time() + 10
    while not seen:
        assert time.time() < deadline
        time.sleep(0.01)
    p = job.progress()
    assert (p.phase, p.message, p.fraction) == ("measure", "measuring FLOPs and latency", 0.375)
    release.set()
    assert job.wait(10) and job.progress().fraction == 1.0


# ---- pages that draw one method's traces, and the Speed lab's measurement ----------------------
@pytest.fixture(scope="module")
def method_store(tmp_path_factory) -> Path:
    """Tiny finished ASWL and unification runs, whose traces the analysis pages draw."""
    home = tmp_path_factory.mktemp("method-home")
    store = RunStore(home)
    for method in ("aswl", "unification"):
        run = run_session(TINY.replace(method=method, epochs=3), store, measure_latency=False)
        assert run.status == "done", run.error
    return home


@pytest.mark.parametrize("page, keys, query", [
    ("pages/3_Layer_attention.py", {"aswl-attention", "aswl-ratio"}, {}),
    ("pages/6_Methods.py", {"admm-distance", "admm-fractions"}, {"method": "Weight unification"}),
])
def test_method_pages_draw_their_side_by_side_charts(page, keys, query, method_store,
                                                     monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(method_store))
    at = app(page, query)
    no_exception(at)
    drawn = [chart.proto.id for chart in at.get("plotly_chart")]  # "$$ID-<hash>-<key>"
    assert all(any(chart_id.endswith("-" + key) for chart_id in drawn) for key in keys), drawn


def test_speed_lab_measures_and_draws(full_home):
    at = app("pages/7_Speed_lab.py")
    at.multiselect(key="speedlab-batches").set_value([1, 8]).run()
    at.button(key="speedlab-measure").click().run()
    no_exception(at)
    table = at.dataframe[0].value
    assert sorted(set(table["batch"])) == [1, 8] and len(table) == 8  # four forms × two batches
    assert [c.value for c in at.caption if c.value.startswith("Time per image")]
    assert [c.value for c in at.caption if c.value.startswith("Speed-up over dense")]
