"""run_session: determinism, what a run records, clean stop and failure recording.

Where a run's time went is checked with an injected clock (``ticking_clock``): every read
advances it by one second, so each timed part lasts a whole number of reads whatever the
machine's load, and the tests assert which parts were timed and that they add up, never how
long anything took.
"""
import sys
import time

import pytest
import torch

from pruning.config import ConfigError, RunConfig
from pruning.validation import validate
from pruning.session import run_session, snapshot_steps
from pruning.store import RunStore

TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)


class TickingClock:
    """Stands in for the ``time`` module: ``perf_counter`` advances one second per read."""

    def __init__(self) -> None:
        self.reads = 0

    def perf_counter(self) -> float:
        self.reads += 1
        return float(self.reads)

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture
def ticking_clock(monkeypatch) -> TickingClock:
    """The clock of every loaded ``pruning`` module that times with ``time.perf_counter``."""
    clock = TickingClock()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "pruning" and getattr(module, "time", None) is time:
            monkeypatch.setattr(module, "time", clock)
    return clock


def test_snapshot_steps_spread_and_include_last():
    assert snapshot_steps(100, 4) == {25, 50, 75, 100}
    assert snapshot_steps(3, 20) == {1, 2, 3}
    assert snapshot_steps(10, 0) == set()


def test_same_seed_same_result_and_records(tmp_path):
    store = RunStore(tmp_path)
    a = run_session(TINY, store, measure_latency=False)
    b = run_session(TINY, store, measure_latency=False)
    assert a.status == b.status == "done", a.error
    assert a.summary["test_acc"] == b.summary["test_acc"]
    assert [e["train_loss"] for e in store.epochs(a.id)] == [e["train_loss"] for e in store.epochs(b.id)]
    wa, wb = store.load_model(a.id).state_dict(), store.load_model(b.id).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    s = a.summary
    # the one-cycle schedule ends exactly at the target; the mask meets it to within a weight
    assert s["target_sparsity"] == pytest.approx(0.9)
    assert s["mask_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert s["params_nonzero"] < s["params_dense"]
    assert 0 < s["flops"] < s["flops_dense"]
    epochs = store.epochs(a.id)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[-1]["mask_sparsity"] == pytest.approx(0.9, abs=1e-3)
    snaps = store.snapshots(a.id)
    assert 1 <= len(snaps) <= 5
    sparsities = [snap["sparsity"] for snap in snaps]
    assert sparsities == sorted(sparsities)  # masks only lose entries over a monotone schedule
    masks = [store.load_snapshot(a.id, snap["step"]) for snap in snaps]
    assert all(later.is_subset_of(earlier) for earlier, later in zip(masks, masks[1:]))
    assert a.environment["torch"] == torch.__version__


def test_stop_is_recorded_with_history(tmp_path, ticking_clock):
    store = RunStore(tmp_path)
    events = []

    def should_stop():
        return any(e.metrics.get("epoch_end") for e in events)

    run = run_session(TINY.replace(epochs=5), store, on_event=events.append, should_stop=should_stop,
                      measure_latency=False)
    assert run.status == "stopped"
    assert run.summary["epochs_done"] == 1
    assert len(store.epochs(run.id)) == 1
    assert "test_acc" in run.summary
    # what it spent until the stop: setup and one epoch's parts, no final measurement
    breakdown = run.summary["time_breakdown_s"]
    assert {"setup", "training", "method", "evaluation"} <= set(breakdown)
    assert "final_measurement" not in breakdown
    assert all(breakdown[part] >= 1 for part in ("setup", "training", "method", "evaluation"))
    # the parts cover the whole call but the clock read that closes it
    assert sum(breakdown.values()) == run.summary["duration_s"] - 1


def test_failure_is_recorded_not_lost(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    import pruning.training as training

    def boom(*args, **kwargs):
        raise RuntimeError("exploded on purpose")

    monkeypatch.setattr(training, "evaluate", boom)
    monkeypatch.setattr("pruning.session.evaluate", boom)
    run = run_session(TINY, store, measure_latency=False)
    assert run.status == "failed"
    assert "exploded on purpose" in run.error


@pytest.mark.parametrize("change, message", [
    ({"model": "nope"}, "unknown model 'nope'"),
    ({"sparsity": 1.0}, "sparsity must be in [0, 1)"),
    ({"epochs": 0}, "epochs must be in [1, 1000]"),
    ({"method": "magnitude", "method_params": {"zzz": "1"}}, "zzz"),
])
def test_bad_input_writes_nothing(tmp_path, change, message):
    store = RunStore(tmp_path / "home")
    with pytest.raises(ConfigError) as info:
        run_session(TINY.replace(**change), store)
    assert message in str(info.value)
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("change, message", [
    ({"granularity": "nm", "sparsity": 0.8}, "reaches at most 50%"),
    ({"schedule_params": {"beta": 800.0}}, "beta must be in"),
    ({"scope": "everywhere"}, "scope must be one of"),
])
def test_config_validation_names_the_fix(change, message):
    with pytest.raises(ConfigError, match=message):
        validate(TINY.replace(**change))


def test_thread_choice_and_restore(tmp_path):
    from pruning.session import SMALL_MODEL_FLOPS, choose_threads

    cpu = torch.device("cpu")
    assert choose_threads(TINY.replace(threads=3), cpu, 10) == 3
    assert choose_threads(TINY, cpu, SMALL_MODEL_FLOPS - 1) == 1
    assert choose_threads(TINY, cpu, SMALL_MODEL_FLOPS) == torch.get_num_threads()
    before = torch.get_num_threads()
    run = run_session(TINY.replace(threads=2), RunStore(tmp_path), measure_latency=False)
    assert run.environment["threads"] == 2
    assert torch.get_num_threads() == before  # the process's setting is given back


def test_summary_says_where_the_time_went(tmp_path, ticking_clock):
    from pruning.session import TIME_PARTS, time_breakdown_text

    run = run_session(TINY, RunStore(tmp_path), measure_latency=False)
    breakdown = run.summary["time_breakdown_s"]
    assert list(breakdown) == list(TIME_PARTS)  # every part, in a run's order
    assert all(seconds >= 1 for seconds in breakdown.values())  # each part was timed
    # the parts cover the whole call but the clock read that closes it
    assert sum(breakdown.values()) == run.summary["duration_s"] - 1
    text = time_breakdown_text(run.summary)
    assert text.startswith("setup") and "evaluation after each epoch" in text


def test_method_work_outside_the_step_loop_counts_as_method(tmp_path, monkeypatch):
    import time

    from pruning.methods.scheduled import ScheduledHooks

    store = RunStore(tmp_path)
    plain = run_session(TINY, store, measure_latency=False).summary["time_breakdown_s"]
    original = ScheduledHooks.on_train_start

    def slow_start(self, model, total_steps):  # e.g. a costly criterion scoring at step 0
        time.sleep(0.3)
        original(self, model, total_steps)

    monkeypatch.setattr(ScheduledHooks, "on_train_start", slow_start)
    slow = run_session(TINY, store, measure_latency=False).summary["time_breakdown_s"]
    assert slow["method"] - plain["method"] >= 0.29
    assert abs(slow["training"] - plain["training"]) < 0.2
