"""A stop lands within one pass in every long loop; a run whose training stops being finite ends
``failed`` with the reason and the fix, its history kept.

Stops are checked by structure, not time: ``should_stop`` flips after a given number of passes
of the loop under test, and the test counts how many passes ran after that.
"""
from __future__ import annotations

import re

import pytest
import torch

from pruning.cli import main
from pruning.config import RunConfig
from pruning.methods import criteria, ispasp
from pruning.session import run_session
from pruning.store import RunStore

#: 4 optimizer steps per epoch
TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)
#: the criterion scores once, before the first step, to the final target
ONE_SHOT = TINY.replace(schedule="one_shot", window_start=0.0, window_end=0.0)


class Passes:
    """Counts calls of a module function (a gradient pass, an i-SpaSP iteration)."""

    def __init__(self, monkeypatch, module, name: str):
        self.calls = 0
        original = getattr(module, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


def stop_after(passes: Passes, n: int):
    """A should_stop that turns true once ``n`` passes have run; remembers the count then."""
    state = {"at_stop": None}

    def should_stop() -> bool:
        if passes.calls >= n:
            state["at_stop"] = passes.calls if state["at_stop"] is None else state["at_stop"]
            return True
        return False
    return should_stop, state


@pytest.mark.parametrize("method, params, passes_before_stop", [
    ("snip", {}, 0),                       # one gradient pass per scoring: stop before it
    ("grasp", {}, 1),                      # between the gradient and the Hessian-vector product
    ("synflow", {"iterations": 100}, 7),   # inside the 100 scoring iterations
    ("taylor", {"batches": 4}, 2),         # between mini-batches
])
def test_stop_lands_inside_the_criterion_scoring(tmp_path, monkeypatch, method, params,
                                                 passes_before_stop):
    passes = Passes(monkeypatch, criteria, "_grad")
    should_stop, state = stop_after(passes, passes_before_stop)
    store = RunStore(tmp_path)
    run = run_session(ONE_SHOT.replace(method=method, method_params=params), store,
                      should_stop=should_stop, measure_latency=False)
    assert run.status == "stopped", run.error
    assert state["at_stop"] == passes_before_stop  # the flag was seen during scoring …
    assert passes.calls == passes_before_stop      # … and no further pass ran
    assert store.epochs(run.id) == [] and run.summary["epochs_done"] == 0


def test_synflow_scores_fully_when_nobody_stops(monkeypatch):
    """The counter above sees every iteration: 100 gradient passes for one SynFlow scoring."""
    from pruning.models import build_model

    passes = Passes(monkeypatch, criteria, "_grad")
    model = build_model(TINY, 1, 10, 8)
    x = torch.randn(16, 1, 8, 8)
    criteria.Pruner("synflow")(model, None, 0.9, (x, torch.zeros(16, dtype=torch.long)))
    assert passes.calls == 100


def test_stop_lands_inside_ispasp_selection(tmp_path, monkeypatch):
    iterations = Passes(monkeypatch, ispasp, "_residual_and_importance")
    should_stop, state = stop_after(iterations, 3)
    store = RunStore(tmp_path)
    run = run_session(TINY.replace(method="ispasp"), store, should_stop=should_stop,
                      measure_latency=False)
    assert run.status == "stopped", run.error
    assert state["at_stop"] == 3 and iterations.calls == 3  # of the 21 the first block would run
    phases = [row["phase"] for row in store.epochs(run.id)]
    assert phases and set(phases) == {"pretrain"}  # stopped before any fine-tuning epoch
    assert not [t for t in store.traces(run.id) if t["kind"] == "ispasp_units"]


def test_stop_lands_inside_evaluation(digits):
    """Evaluation checks the flag before each batch (a large test set takes seconds)."""
    from pruning.models import build_model
    from pruning.training import RunStopped, evaluate

    model = build_model(TINY, 1, 10, 8)
    forwards = []
    model.register_forward_hook(lambda module, args, out: forwards.append(len(out)))
    checks = []

    def check_stop():
        checks.append(True)
        if len(checks) > 3:
            raise RunStopped()

    with pytest.raises(RunStopped):
        evaluate(model, digits, torch.device("cpu"), batch_size=32, check_stop=check_stop)
    assert len(forwards) == 3 < len(digits.test_y) / 32  # three batches of many, then the stop


DIVERGED = re.compile(r"^diverged at epoch (\d+), step (\d+): loss is (nan|inf); "
                      r"lower the learning rate$")


def test_huge_learning_rate_fails_with_the_reason(tmp_path):
    store = RunStore(tmp_path)
    run = run_session(TINY.replace(optimizer="sgd", lr=10.0, momentum=0.99), store, measure_latency=False)
    # The largest learning rate validation accepts (10) with heavy momentum: the weights or the
    # BatchNorm statistics blow up within two epochs. (The exact step is checked below, with a
    # poisoned loss.)
    assert run.status == "failed"
    assert run.error.startswith("diverged at epoch ") and "\n" not in run.error, run.error
    assert run.error.endswith("lower the learning rate"), run.error


def test_divergence_names_the_step_and_keeps_the_history(tmp_path, monkeypatch):
    """The loss of step 6 (epoch 2, of 4 steps per epoch) turns nan: epoch 1 stays recorded."""
    import pruning.training as training

    real = training.F
    steps = {"n": 0}

    class PoisonedLoss:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def cross_entropy(logits, y, **kwargs):
            loss = real.cross_entropy(logits, y, **kwargs)
            if kwargs:  # evaluation (reduction="sum") stays clean
                return loss
            steps["n"] += 1
            return loss * float("nan") if steps["n"] == 6 else loss

    monkeypatch.setattr(training, "F", PoisonedLoss())
    store = RunStore(tmp_path)
    run = run_session(TINY.replace(epochs=3), store, measure_latency=False)
    assert run.status == "failed"
    assert run.error == "diverged at epoch 2, step 6: loss is nan; lower the learning rate"
    assert [row["epoch"] for row in store.epochs(run.id)] == [1]
    assert run.summary["epochs_done"] == 1 and run.summary["test_acc"] is not None


def test_weights_that_stop_being_finite_fail_the_run(tmp_path, monkeypatch):
    """A weight turned inf after the epoch's last step: the losses were finite, the weights not."""
    from pruning.methods.scheduled import ScheduledHooks

    original = ScheduledHooks.after_step

    def poison(self, model, step, progress, batch):
        original(self, model, step, progress, batch)
        if step == 4:
            with torch.no_grad():
                model.fc2.weight.fill_(float("inf"))

    monkeypatch.setattr(ScheduledHooks, "after_step", poison)
    run = run_session(TINY, RunStore(tmp_path), measure_latency=False)
    assert run.status == "failed"
    assert run.error == ("diverged at epoch 1: fc2.weight is no longer finite; "
                         "lower the learning rate")


def test_a_method_penalty_that_overflows_names_the_method_setting(tmp_path):
    run = run_session(TINY.replace(method="unification", method_params={"rho": 1e300}),
                      RunStore(tmp_path), measure_latency=False)
    assert run.status == "failed"
    assert run.error.startswith("diverged at epoch 1, step 1: the method's added loss term")
    assert run.error.endswith("lower the method's penalty setting or the learning rate")


def test_cli_exits_non_zero_with_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    code = main(["run", "--optimizer", "sgd", "--lr", "10", "--momentum", "0.99", "--epochs", "2",
                 "--max-train-samples", "256", "--quiet"])
    out = capsys.readouterr().out
    assert code != 0
    assert "[failed]" in out
    error_lines = [line.strip() for line in out.splitlines() if line.strip().startswith("error:")]
    assert len(error_lines) == 1
    assert error_lines[0].startswith("error: diverged at epoch ")
    assert error_lines[0].endswith("lower the learning rate")
