"""A training run follows its schedule step by step (METHODS.md §1): with magnitude pruning, the
weights' sparsity after every optimizer step is the schedule's target at that step's progress,
to within one weight per layer."""
from __future__ import annotations

import pytest
import torch

from pruning.config import RunConfig
from pruning.masks import prunable_parameters
from pruning.methods import METHODS, method_config
from pruning.methods.granularity import prune_count
from pruning.methods.scheduled import ScheduledHooks
from pruning.models import build_model
from pruning.schedules import schedule_from_config
from pruning.training import MemoryRecorder, RunContext


def follow(config: RunConfig, data, monkeypatch) -> list[tuple[float, int, int, int]]:
    """Run ``config``; per step: (target, weights pruned, weights expected pruned, layers)."""
    seen = []
    schedule = schedule_from_config(config)
    original = ScheduledHooks.after_step

    def after_step(self, model, step, progress, batch):
        original(self, model, step, progress, batch)
        params = prunable_parameters(model)
        target = schedule(progress)
        # The model's own weights, not the hooks' bookkeeping: pruned weights are zeros.
        zeros = sum(int((p.detach() == 0).sum()) for p in params.values())
        if config.scope == "global":
            expected = prune_count(sum(p.numel() for p in params.values()), target)
        else:
            expected = sum(prune_count(p.numel(), target) for p in params.values())
        seen.append((target, zeros, expected, len(params)))

    monkeypatch.setattr(ScheduledHooks, "after_step", after_step)
    model = build_model(config, data.in_channels, data.num_classes, data.image_size)
    ctx = RunContext(config, method_config(config), data, torch.device("cpu"), MemoryRecorder())
    METHODS.get(config.method)(config, method_config(config)).run(model, ctx)
    return seen


@pytest.mark.parametrize("scope, schedule, epochs", [
    ("global", "one_cycle", 12),     # the default session
    ("layerwise", "agp", 3),
    ("global", "iterative", 3),
])
def test_magnitude_run_follows_its_schedule_at_every_step(digits, monkeypatch, scope, schedule,
                                                          epochs):
    config = RunConfig(method="magnitude", scope=scope, schedule=schedule, epochs=epochs)
    seen = follow(config, digits, monkeypatch)
    assert len(seen) == epochs * digits.steps_per_epoch("train", config.batch_size)
    for step, (target, zeros, expected, layers) in enumerate(seen, start=1):
        assert abs(zeros - expected) <= layers, (step, target, zeros, expected)
    targets = [t for t, *_ in seen]
    assert targets[-1] == pytest.approx(config.sparsity)
    assert len(set(round(t, 6) for t in targets)) > 2  # the target really moves during the run
