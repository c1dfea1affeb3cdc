"""One visual language and labels that tell the truth: colours and markers fixed by registry
name, accuracy axes within 100 %, no schedule on runs whose method ignores it, each method's real
target, and the seed spread stated wherever runs over several seeds are compared.

Stores here are written directly (create_run, add_epoch, finish_run) with known numbers, so the
assertions are exact and no model is trained.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pruning import compare
from pruning.config import RunConfig
from pruning.store import RunStore
from ui import formatting, pickers, report
from ui.charts import style, tradeoffs, training

ROOT = Path(__file__).resolve().parents[1]

#: final test accuracy of each (schedule, seed), on digits' 360 test images
ACCURACY = {("one_shot", 0): 0.95, ("one_shot", 1): 0.955, ("one_shot", 2): 0.96,
            ("agp", 0): 0.90, ("agp", 1): 0.905, ("agp", 2): 0.91}


def _add(store: RunStore, config: RunConfig, accuracy: float, **summary) -> str:
    run_id = store.create_run(config, {})
    for epoch in (1, 2):
        store.add_epoch(run_id, {"epoch": epoch, "test_acc": accuracy - 0.01 * (2 - epoch),
                                 "target_sparsity": config.sparsity * epoch / 2,
                                 "mask_sparsity": config.sparsity * epoch / 2})
    store.finish_run(run_id, "done", {"test_acc": accuracy, "test_examples": 360,
                                      "target_sparsity": config.sparsity,
                                      "mask_sparsity": config.sparsity, **summary})
    return run_id


@pytest.fixture()
def seeded_home(tmp_path, monkeypatch) -> Path:
    """Two schedules × three seeds of magnitude at 90 %, one i-SpaSP and one ASWL run."""
    home = tmp_path / "home"
    monkeypatch.setenv("PRUNING_HOME", str(home))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    store = RunStore(home)
    for (schedule, seed), accuracy in ACCURACY.items():
        _add(store, RunConfig(schedule=schedule, seed=seed, epochs=2), accuracy)
    ispasp = store.create_run(RunConfig(method="ispasp", epochs=2), {})
    store.finish_run(ispasp, "done", {"test_acc": 0.93, "target_sparsity": 0.9,
                                      "effective_sparsity": 0.745})
    _add(store, RunConfig(method="aswl", epochs=2), 0.94)
    return home


def _app(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---- one visual language -----------------------------------------------------------------------
def test_method_colours_and_schedule_markers_do_not_depend_on_the_runs_shown():
    def frame(methods_and_schedules):
        rows = [{"method": m, "schedule": s, "target": t, "n": 3, "seeds": "0, 1, 2",
                 "dense": False, "curve": f"{m} · {s}", "density": 1 - t, "density_error": 0.0,
                 "test_acc": 0.9 - t / 10, "test_acc_error": 0.003}
                for m, s in methods_and_schedules for t in (0.5, 0.9)]
        return pd.DataFrame(rows)

    def styles(fig):
        return {t.name.split(" (")[0]: (t.line.color, t.line.dash, t.marker.symbol)
                for t in fig.data if t.name and "·" in t.name}

    few = styles(tradeoffs.tradeoff_figure(frame([("magnitude", "agp")]), "density",
                                           x_title="kept", x_higher_better=False))
    many = styles(tradeoffs.tradeoff_figure(
        frame([("snip", "one_shot"), ("random", "agp"), ("magnitude", "agp"),
               ("taylor", "one_cycle")]), "density", x_title="kept", x_higher_better=False))
    # adding runs of other methods does not recolour magnitude, nor re-mark agp
    assert few["magnitude · agp"] == many["magnitude · agp"]
    assert many["random · agp"][1:] == many["magnitude · agp"][1:]       # same schedule mark
    assert many["random · agp"][0] != many["magnitude · agp"][0]         # other method colour
    assert len({c for c, _, _ in many.values()}) == 4
    assert many["magnitude · agp"][0] == style.run_color("magnitude", "agp")
    # every method and schedule of the registries has its own colour / dash and marker
    from pruning.methods import METHODS
    from pruning.schedules import SCHEDULES
    assert len({style.method_color(m) for m in METHODS.names()}) == len(METHODS.names())
    marks = {(style.schedule_dash(s), style.schedule_symbol(s)) for s in SCHEDULES.names()}
    assert len(marks) == len(SCHEDULES.names())


def test_accuracy_axes_never_pass_100_percent():
    epochs = pd.DataFrame({"epoch": [1, 2] * 3, "test_acc": [0.97, 1.0, 0.99, 1.0, 0.95, 0.99],
                           "mask_sparsity": [0.5, 0.9] * 3, "target_sparsity": [0.5, 0.9] * 3,
                           "run": ["a", "a", "b", "b", "c", "c"], "group": ["g"] * 6})
    fig = training.training_curves(epochs, group="group")
    assert fig.layout.yaxis.range[1] <= 1.0 and fig.layout.yaxis.tickformat == ".0%"
    # the band (mean ± std) is drawn inside [0, 1] too
    band = next(t for t in fig.data if t.fill == "toself")
    assert max(band.y) <= 1.0
    frame = pd.DataFrame({"method": ["magnitude"] * 2, "schedule": ["agp"] * 2, "target": [0, 0.9],
                          "n": [3, 3], "seeds": ["0, 1, 2"] * 2, "dense": [True, False],
                          "curve": ["magnitude · agp"] * 2, "density": [1.0, 0.1],
                          "density_error": [0.0, 0.0], "test_acc": [0.999, 0.99],
                          "test_acc_error": [0.01, 0.02]})
    fig = tradeoffs.tradeoff_figure(frame, "density", x_title="kept", x_higher_better=False)
    low, high = fig.layout.yaxis.range
    assert high <= 1.0 and high - low >= 0.10 - 1e-9  # a one-image difference does not fill the chart
    assert "log" in fig.layout.xaxis.title.text and fig.layout.xaxis.type == "log"


# ---- labels that tell the truth ----------------------------------------------------------------
def test_methods_that_ignore_the_schedule_are_not_labelled_with_one(seeded_home):
    runs = {r.config.method: r for r in RunStore(seeded_home).list_runs()}
    ispasp, aswl, magnitude = runs["ispasp"], runs["aswl"], runs["magnitude"]
    for run in (ispasp, aswl):
        label = formatting.run_label(run)
        assert run.config.schedule not in label  # one_cycle is the config's default
        assert pickers.runs_frame([run])["schedule"].tolist() == [style.NO_SCHEDULE]
    assert magnitude.config.schedule in formatting.run_label(magnitude)
    # i-SpaSP's real target is its keep ratio, and no "target sparsity" is shown for it
    assert "keep ratio 0.3" in formatting.run_label(ispasp) and "90" not in formatting.run_label(ispasp)
    assert "target_sparsity" not in formatting.shown_summary(ispasp)
    assert formatting.shown_summary(magnitude)["target_sparsity"] == 0.9


def test_runs_page_names_real_targets_and_no_schedule_for_ispasp(seeded_home):
    at = _app("pages/8_Runs.py")
    history = at.dataframe[0].value
    row = history[history["method"] == "ispasp"].iloc[0]
    assert row["schedule"] == style.NO_SCHEDULE and row["target_text"].startswith("keep ratio")


# ---- uncertainty where runs are compared -------------------------------------------------------
def test_seed_groups_average_into_one_line_with_a_band_and_n_in_the_legend(seeded_home):
    store = RunStore(seeded_home)
    runs = [r for r in store.list_runs() if r.config.method == "magnitude"]
    labels = report.seed_groups(runs)
    assert sorted(set(labels.values())) == ["agp", "one_shot"]
    fig = training.training_curves(report.grouped_epochs(store, runs), group="group")
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert {"agp (mean of 3 seeds)", "one_shot (mean of 3 seeds)"} <= set(names)
    assert sum(t.fill == "toself" for t in fig.data) == 2  # one band per schedule
    # colour = the method's hue shaded by the schedule, dash = the schedule's
    mean = {t.name: t for t in fig.data if t.name and "mean of" in t.name}
    assert mean["agp (mean of 3 seeds)"].line.color == style.run_color("magnitude", "agp")
    assert mean["one_shot (mean of 3 seeds)"].line.color == style.method_color("magnitude")
    assert mean["agp (mean of 3 seeds)"].line.color != mean["one_shot (mean of 3 seeds)"].line.color
    assert mean["agp (mean of 3 seeds)"].line.dash == style.schedule_dash("agp")


def test_schedules_page_states_seeds_spread_and_verdict(seeded_home):
    at = _app("pages/2_Schedules.py")
    captions = " ".join(c.value for c in at.caption)
    assert "n = 3 seeds per line" in captions and "± one standard deviation" in captions
    table = at.dataframe[0].value.set_index("group")
    assert table.loc["one_shot", "seeds"] == 3
    assert table.loc["one_shot", "mean ± std"] == "95.5% ± 0.5%"
    verdicts = " ".join(m.value for m in at.markdown)
    # 5.0 points apart, each spread 0.5 points: the difference is a finding
    assert "**one_shot** over **agp** by 5.00 points: " + compare.EXCEEDS_SPREAD in verdicts


def test_verdicts_say_when_a_difference_is_smaller_than_one_test_example(tmp_path):
    store = RunStore(tmp_path)
    for schedule, accuracies in (("one_shot", (0.95, 0.96)), ("agp", (0.951, 0.961))):
        for seed, accuracy in enumerate(accuracies):
            _add(store, RunConfig(schedule=schedule, seed=seed, epochs=2), accuracy)
    lines = report.verdict_lines(store.list_runs())
    assert len(lines) == 1 and compare.SMALLER_THAN_ONE_EXAMPLE in lines[0]
    assert "one test example = 0.28%" in lines[0]


def test_tradeoffs_page_draws_curves_with_error_bars_and_states_n(seeded_home):
    at = _app("pages/5_Trade-offs.py")
    captions = " ".join(c.value for c in at.caption)
    assert "n = 1–3" in captions and "fraction of weights kept" in captions
    data = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    names = " ".join(t.get("name", "") for t in data)
    assert "magnitude · agp (n = 3 seeds)" in names and "ispasp · no schedule (n = 1 seed)" in names
    assert all("error_y" in t for t in data if " · " in t.get("name", ""))


def test_schedules_overlay_shows_the_new_runs_when_training_ends(seeded_home):
    from ui import live

    at = _app("pages/2_Schedules.py")
    before = set(at.multiselect(key="sch-overlay").value)
    assert len(before) == 6  # the stored comparison: two schedules × three seeds
    at.multiselect(key="sch-names").set_value(["iterative"]).run()
    at.button(key="sch-train").click().run()
    job = live.manager().get(at.session_state["job:schedules"])
    assert job.wait(120)
    at.run()  # what the job panel's rerun does in the browser
    assert not at.exception, [e.value for e in at.exception]
    new = set(job.progress().run_ids)
    assert len(new) == 3 and set(at.multiselect(key="sch-overlay").value) == new
    table = at.dataframe[0].value  # one schedule over three seeds
    assert table["group"].tolist() == ["method magnitude · schedule iterative"]
    assert table["seeds"].tolist() == [3]
