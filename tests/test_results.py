"""Results described once: the summary type, every method's declared extras and traces, the
metric table that the CLI and the app read, and old stored summaries read back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pruning.cli import list_table, main, summary_table
from pruning.config import RunConfig
from pruning.methods import METHODS
from pruning.results import (METRICS, Metric, RunSummary, TraceKind, check_types,
                             method_extras, stored_summary)
from pruning.session import run_session
from pruning.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SHORT = RunConfig(epochs=2, max_train_samples=128, batch_size=32, snapshots=2)


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory) -> tuple[RunStore, dict[str, str]]:
    """One short digits run per registered method at its defaults (run ids by method)."""
    store = RunStore(tmp_path_factory.mktemp("contract"))
    ids = {name: run_session(SHORT.replace(method=name), store, measure_latency=False).id
           for name in METHODS.names()}
    return store, ids


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_reports_the_summary_type_and_only_declared_traces(method, method_runs):
    store, ids = method_runs
    run = store.get_run(ids[method])
    assert run.status == "done", run.error
    cls = METHODS.get(method)
    summary = RunSummary.from_dict(run.summary)
    summary.check()  # every field of its declared type
    assert summary.test_acc is not None and 0.0 <= summary.test_acc <= 1.0
    assert summary.params_compact <= summary.params_dense
    assert summary.epochs_done >= 1 and summary.steps_done >= 1
    # the method's own results: exactly its declared extras, of their types
    declared = [] if cls.extras is None else [f for f in cls.extras.__dataclass_fields__]
    assert sorted(summary.extras) == sorted(declared)
    assert method_extras(cls.extras, summary.extras, method) == summary.extras
    # traces: only the kinds it declares, each record of the declared shape
    kinds = {kind.name: kind for kind in cls.traces}
    assert set(store.trace_kinds(run.id)) <= set(kinds)
    for name in store.trace_kinds(run.id):
        for record in store.traces(run.id, name):
            payload = {k: v for k, v in record.items()
                       if k != "step" and (k != "kind" or "kind" in kinds[name].payload)}
            kinds[name].check(payload)


def test_methods_that_write_traces_declare_them():
    # not vacuous: the paper methods write traces and are checked above
    declared = {name: [k.name for k in METHODS.get(name).traces] for name in METHODS.names()}
    assert declared["aswl"] == ["aswl", "aswl_final"]
    assert declared["ssc"] == ["ssc_pattern"]
    assert declared["ispasp"] == ["ispasp_residual", "ispasp_units"]
    assert declared["unification"] == ["admm", "unification_storage"]


def test_undeclared_or_mistyped_results_are_refused():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Extras:
        blocks: int

    assert method_extras(Extras, {"blocks": 3}, "m") == {"blocks": 3}
    with pytest.raises(TypeError, match="results do not match Extras"):
        method_extras(Extras, {"blocks": 3, "surprise": 1}, "m")
    with pytest.raises(TypeError, match="Extras.blocks"):
        method_extras(Extras, {"blocks": "three"}, "m")
    with pytest.raises(TypeError, match="declares no extras"):
        method_extras(None, {"blocks": 3}, "m")
    with pytest.raises(TypeError, match="RunSummary.test_acc"):
        check_types(RunSummary(test_acc="high"))
    kind = TraceKind("k", {"layer": str, "ratio": list[float]})
    kind.check({"layer": "conv1", "ratio": [0.5, 1]})
    with pytest.raises(TypeError, match="differ from the declared"):
        kind.check({"layer": "conv1"})


def test_old_stored_summaries_read_back_under_one_name_per_concept():
    # as SSC and i-SpaSP runs were stored before: method keys at the top, their own names
    ssc = stored_summary({"test_acc": 0.5, "params_dense": 100, "params_ssc": 40,
                          "flops_ssc": 7, "conv_params_ssc": 30, "density": 0.2, "acc": 0.5})
    assert ssc["params_compact"] == 40 and ssc["flops_compact"] == 7
    assert ssc["extras"] == {"conv_params": 30, "density": 0.2}
    ispasp = stored_summary({"params_pruned": 10, "params_compact": 12, "blocks": 2})
    assert ispasp["params_compact"] == 12  # the session's own figure wins
    assert ispasp["extras"] == {"blocks": 2}
    newer = stored_summary({"test_acc": 0.9, "extras": {"x": 1}, "future_field": [1]})
    assert newer["extras"] == {"x": 1, "future_field": [1]}  # kept, not fatal
    assert stored_summary({}) == {}  # a running run


@pytest.fixture
def throwaway_metric():
    """A metric registered in the one place, as a plug-in would: accuracy per MFLOP."""
    metric = METRICS.register(Metric(
        "acc_per_mflop", "accuracy per MFLOP", "fraction per MFLOP", "float", "higher",
        short="acc/MFLOP", views=("list", "detail"),
        compute=lambda s: None if not s.get("flops") else s["test_acc"] / (s["flops"] / 1e6)))
    yield metric
    METRICS.unregister(metric.key)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("metric-home")
    run = run_session(SHORT, RunStore(home), measure_latency=False)
    assert run.status == "done", run.error
    return home


def test_a_metric_registered_once_appears_in_the_cli_and_the_runs_page(
        throwaway_metric, one_run, monkeypatch, capsys):
    from streamlit.testing.v1 import AppTest

    run = RunStore(one_run).list_runs()[0]
    expected = throwaway_metric.value(run.summary)
    assert expected > 0
    monkeypatch.setenv("PRUNING_HOME", str(one_run))
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "acc/MFLOP" in listing.splitlines()[0]
    assert f"{expected:.4g}" in listing.splitlines()[2]
    assert f"accuracy per MFLOP         {expected:.4g}" in summary_table(run)
    assert "acc/MFLOP" in list_table([run])

    at = AppTest.from_file(str(ROOT / "pages/8_Runs.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    history = at.dataframe[0]
    assert history.value["acc_per_mflop"].tolist() == [pytest.approx(expected)]
    assert json.loads(history.proto.columns)["acc_per_mflop"]["label"] == "accuracy per MFLOP"


def test_metric_table_rows_are_well_formed():
    with pytest.raises(ValueError, match="already registered"):
        METRICS.register(Metric("test_acc", "again", "fraction", "pct"))
    with pytest.raises(ValueError, match="format"):
        Metric("x", "x", "", "percentage")
    keys = [m.key for m in METRICS]
    assert keys[0] == "test_acc" and len(keys) == len(set(keys))
    fields = set(RunSummary.__dataclass_fields__)
    # every stored metric names a RunSummary field; derived ones compute from them
    assert all(m.key in fields or m.compute is not None for m in METRICS)
    assert METRICS.get("flops").text(1_284_608) == "1.28 M"
    assert METRICS.get("test_acc").text(None) == "–"
