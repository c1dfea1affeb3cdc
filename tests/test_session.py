"""run_session: determinism, what a run records, clean stop and failure recording.

Where a run's time went is checked with injected clocks (``run_session(clock=...)``): one that
advances a second per read, and one that moves only when a patched step says so, so the tests
assert which parts were timed and what they add up to, never how long anything took.
"""
import pytest
import torch

from pruning.config import ConfigError, RunConfig
from pruning.models import build_model
from pruning.session import StoreRecorder, run_session, snapshot_steps
from pruning.store import RunStore
from pruning.validation import validate

TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)


class TickingClock:
    """An injected clock (``run_session(clock=...)``) that advances one second per read."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return float(self.reads)


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


def test_stop_is_recorded_with_history(tmp_path):
    store = RunStore(tmp_path)
    events = []

    def should_stop():
        return any(e.metrics.get("epoch_end") for e in events)

    run = run_session(TINY.replace(epochs=5), store, on_event=events.append, should_stop=should_stop,
                      measure_latency=False, clock=TickingClock())
    assert run.status == "stopped"
    assert run.summary["epochs_done"] == 1
    assert len(store.epochs(run.id)) == 1
    assert "test_acc" in run.summary
    # what it spent until the stop: setup and one epoch's parts, no final measurement
    breakdown = run.summary["time_breakdown_s"]
    assert {"setup", "training", "method", "evaluation"} <= set(breakdown)
    assert "final_measurement" not in breakdown
    assert all(breakdown[part] >= 1 for part in ("setup", "training", "method", "evaluation"))
    assert sum(breakdown.values()) < run.summary["duration_s"]  # the parts lie within the call


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


def test_thread_choice_is_the_process_setting(tmp_path):
    from pruning.session import SMALL_MODEL_FLOPS, choose_threads

    cpu = torch.device("cpu")
    assert choose_threads(TINY.replace(threads=3), cpu, 10) == 3
    assert choose_threads(TINY, cpu, SMALL_MODEL_FLOPS - 1) == 1
    assert choose_threads(TINY, cpu, SMALL_MODEL_FLOPS) == torch.get_num_threads()
    before = torch.get_num_threads()
    try:
        run = run_session(TINY.replace(threads=2), RunStore(tmp_path), measure_latency=False)
        assert run.environment["threads"] == 2
        # set for the process and left so: restoring it would change it under other runs
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_first_event_names_the_new_run(tmp_path):
    events = []
    run = run_session(TINY.replace(epochs=1), RunStore(tmp_path), on_event=events.append,
                      measure_latency=False)
    assert events[0].phase == "created" and events[0].metrics == {"run_id": run.id}
    assert [e.phase for e in events].count("created") == 1


def _fingerprint(store, run):
    """What a seed determines: epoch rows, masks, final weights, the summary's numbers."""
    weights = store.load_model(run.id).state_dict()
    epochs = [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in store.epochs(run.id)]
    masks = [store.load_snapshot(run.id, s["step"]).to_bytes() for s in store.snapshots(run.id)]
    summary = {k: v for k, v in run.summary.items() if k not in ("duration_s", "time_breakdown_s")}
    return epochs, masks, {k: w.tolist() for k, w in weights.items()}, summary


def test_concurrent_runs_give_what_they_give_alone(tmp_path):
    """Two runs with different seeds in two threads, as the app runs users' jobs: each gives
    exactly what it gives alone (initialisation and data order never use the global RNG)."""
    import threading

    store = RunStore(tmp_path)
    configs = [TINY.replace(seed=1, epochs=3), TINY.replace(seed=2, method="random", epochs=3)]
    alone = [_fingerprint(store, run_session(c, store, measure_latency=False)) for c in configs]
    torch.manual_seed(12345)  # the global RNG's state must not matter either
    together: list = [None, None]
    start = threading.Barrier(2)

    def work(i):
        start.wait()
        together[i] = run_session(configs[i], store, measure_latency=False)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(run.status == "done" for run in together), [r.error for r in together]
    assert [_fingerprint(store, run) for run in together] == alone
    assert alone[0] != alone[1]


def test_summary_says_where_the_time_went(tmp_path):
    from pruning.session import TIME_PARTS, time_breakdown_text

    run = run_session(TINY, RunStore(tmp_path), measure_latency=False, clock=TickingClock())
    breakdown = run.summary["time_breakdown_s"]
    assert list(breakdown) == list(TIME_PARTS)  # every part, in a run's order
    assert all(seconds >= 1 for seconds in breakdown.values())  # each part was timed
    assert sum(breakdown.values()) < run.summary["duration_s"]  # the parts lie within the call
    text = time_breakdown_text(run.summary)
    assert text.startswith("setup") and "evaluation after each epoch" in text


class FakeClock:
    """A clock that moves only when a test says so: durations become exact, machine-free."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wrap(self, owner, name, seconds, monkeypatch):
        """Make ``owner.name`` take ``seconds`` on this clock each time it is called."""
        original = getattr(owner, name)

        def slow(*args, **kwargs):
            self.now += seconds
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, slow)


def test_method_work_outside_the_step_loop_counts_as_method(tmp_path, monkeypatch):
    import pruning.session as session
    import pruning.training as training
    from pruning.methods.scheduled import ScheduledHooks

    clock = FakeClock()
    clock.wrap(session, "environment", 1, monkeypatch)             # setup
    clock.wrap(ScheduledHooks, "on_train_start", 1000, monkeypatch)  # scoring before step 1
    clock.wrap(ScheduledHooks, "loss", 2, monkeypatch)             # inside each training step
    clock.wrap(ScheduledHooks, "after_step", 30, monkeypatch)      # re-pruning after each step
    clock.wrap(training, "evaluate", 400, monkeypatch)             # after each epoch
    clock.wrap(StoreRecorder, "epoch", 5000, monkeypatch)          # each epoch's row
    clock.wrap(session, "evaluate", 60000, monkeypatch)            # the final evaluation
    run = run_session(TINY, RunStore(tmp_path), measure_latency=False, clock=clock)
    assert run.status == "done", run.error
    steps, epochs = run.summary["steps_done"], run.summary["epochs_done"]
    assert (steps, epochs) == (8, 2)
    assert run.summary["time_breakdown_s"] == {
        "setup": 1, "training": 2 * steps, "method": 1000 + 30 * steps,
        "evaluation": 400 * epochs, "recording": 5000 * epochs, "final_measurement": 60000}
    assert run.summary["duration_s"] == clock.now == sum(run.summary["time_breakdown_s"].values())


def test_stopwatch_charges_nested_spans_to_the_innermost():
    from pruning.training import Stopwatch

    clock = FakeClock()
    timer = Stopwatch(clock)
    with timer("method"):
        clock.now += 1
        with timer("training"):
            clock.now += 10
            with timer("method"):
                clock.now += 100
            clock.now += 1000
        clock.now += 10000
    assert timer.parts == {"method": 10101, "training": 1010}


def test_fit_callbacks_compose(digits):
    """Evaluation, records and events are callbacks: a run can drop one or add its own."""
    from pruning.training import (MemoryRecorder, RunContext, every_epoch, every_step, fit,
                                  record_epoch, standard_callbacks)

    config = TINY.replace(batch_size=64)
    digits.train_x, digits.train_y = digits.train_x[:256], digits.train_y[:256]
    model = build_model(config, 1, 10, 8)
    steps = []
    ctx = RunContext(config, None, digits, torch.device("cpu"), MemoryRecorder(),
                     callbacks=[every_step(lambda state: steps.append(state.step)),
                                every_epoch(record_epoch)])  # no test evaluation
    fit(model, ctx, epochs=2)
    assert steps == list(range(1, 9))
    assert [row["epoch"] for row in ctx.recorder.epochs] == [1, 2]
    assert all("test_acc" not in row and "train_loss" in row for row in ctx.recorder.epochs)
    assert ctx.stopwatch.parts.keys() >= {"training", "method", "recording"}
    assert "evaluation" not in ctx.stopwatch.parts
    names = [callback.__name__ for callback in standard_callbacks()]
    assert names == ["step:save_snapshot", "step:emit_progress", "epoch:evaluate_test",
                     "epoch:record_epoch", "epoch:emit_epoch"]
