"""Progress events during training: throttled by an injected clock, carrying the running loss,
a smoothed training accuracy and the mask's sparsity, so live curves move within an epoch."""
import pytest
import torch

from pruning.config import RunConfig
from pruning.methods.scheduled import ScheduledPruning  # noqa: F401  (registers the methods)
from pruning.models import build_model
from pruning.training import (PROGRESS_INTERVAL_S, RUNNING_DECAY, MemoryRecorder, RunContext,
                              Stopwatch, _RunningCurves, emit_progress, every_step, fit)

CONFIG = RunConfig(epochs=2, batch_size=32)


class TickingClock:
    """Advances ``tick`` seconds every time it is read."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def progress_events(digits, tick: float):
    digits.train_x, digits.train_y = digits.train_x[:256], digits.train_y[:256]
    events = []
    ctx = RunContext(CONFIG, None, digits, torch.device("cpu"), MemoryRecorder(),
                     on_event=events.append, callbacks=[every_step(emit_progress)],
                     stopwatch=Stopwatch(TickingClock(tick)))
    fit(build_model(CONFIG, 1, 10, 8), ctx, epochs=CONFIG.epochs)
    return events


def test_a_still_clock_gives_one_event_at_each_epochs_end_besides_the_first_step(digits):
    events = progress_events(digits, tick=0.0)
    assert [e.step for e in events] == [1, 8, 16]  # 256 examples / 32 = 8 steps per epoch


def test_a_slow_clock_gives_an_event_at_every_step_with_the_live_figures(digits):
    # every step's reads of the clock are far more than the interval apart
    events = progress_events(digits, tick=PROGRESS_INTERVAL_S)
    assert [e.step for e in events] == list(range(1, 17))
    for event in events:
        assert event.metrics["loss"] > 0
        assert 0.0 <= event.metrics["train_acc_running"] <= 1.0
        assert event.metrics["mask_sparsity"] is None  # dense training has no mask
        assert event.metrics["epoch"] in (1, 2)


def test_a_pruning_run_reports_its_mask_sparsity_as_it_grows(tmp_home):
    from pruning.session import run_session
    from pruning.store import RunStore

    events = []
    run_session(RunConfig(epochs=2, max_train_samples=256), RunStore(tmp_home),
                on_event=events.append, measure_latency=False)
    live = [e.metrics["mask_sparsity"] for e in events
            if e.phase == "train" and not e.metrics.get("epoch_end")]
    assert len(live) >= 2 and live[-1] == pytest.approx(RunConfig().sparsity, abs=0.01)
    assert live == sorted(live)  # pruned weights stay pruned


def test_running_figures_are_a_per_batch_moving_average():
    curves = _RunningCurves(lambda: 0.0)
    curves.update(loss_sum=64.0, correct=32, seen=64, steps=1)     # batch mean 1.0, acc 0.5
    assert (curves.loss, curves.acc) == (1.0, 0.5)
    curves.update(loss_sum=64.0 + 3 * 64 * 2.0, correct=32 + 3 * 64, seen=4 * 64, steps=4)
    keep = RUNNING_DECAY ** 3  # three batches of mean loss 2.0 and accuracy 1.0
    assert curves.loss == pytest.approx(keep * 1.0 + (1 - keep) * 2.0)
    assert curves.acc == pytest.approx(keep * 0.5 + (1 - keep) * 1.0)
    curves.update(loss_sum=64.0, correct=64, seen=64, steps=1)     # a new epoch's first batch
    before = keep * 0.5 + (1 - keep)
    assert curves.acc == pytest.approx(RUNNING_DECAY * before + (1 - RUNNING_DECAY))
