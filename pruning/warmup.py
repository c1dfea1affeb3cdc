"""Warm a fresh process for its first run: ``warm_up(config)`` pays the one-time costs early.

The first session in a process pays for more than its own work: importing the training stack
(``torch.optim`` imports ``torch._dynamo`` when the first optimizer is built, 1.5–3 s on a
2-core machine), scikit-learn for the embedded digits, Torch-Pruning for compaction, and the
first forward and backward passes of each layer type (oneDNN builds its kernels). A server calls
``warm_up`` in a background thread when it starts, so that a visitor's first run starts as fast
as the second; nothing is kept: the model and optimizer are built and dropped.
"""
from __future__ import annotations

import time
from typing import Callable

from pruning.config import RunConfig


def warm_up(config: RunConfig | None = None,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Run the first-use work of a session of ``config`` (default: the default session) once;
    returns the seconds each part took ("imports", "data", "model_and_flops", "training_step",
    "compaction")."""
    config = config or RunConfig()
    parts: dict[str, float] = {}
    started = clock()

    def lap(part: str) -> None:
        nonlocal started
        now = clock()
        parts[part] = now - started
        started = now

    import torch
    import torch.nn.functional as F

    from pruning import methods  # noqa: F401  (registers every method)
    from pruning.data import load_dataset
    from pruning.metrics.flops import count_flops
    from pruning.models import build_model
    from pruning.physical import compact_model
    from pruning.session import resolve_device
    from pruning.training import evaluate, make_optimizer
    lap("imports")

    device = resolve_device(config.device)
    bundle = load_dataset(config)
    lap("data")

    model = build_model(config, bundle.in_channels, bundle.num_classes, bundle.image_size)
    shape = (bundle.in_channels, bundle.image_size, bundle.image_size)
    count_flops(model, shape)
    lap("model_and_flops")

    model.to(device).train()
    optimizer = make_optimizer(model.parameters(), config)
    x, y = next(bundle.batches("train", config.batch_size, shuffle=False))
    x, y = x.to(device), y.to(device)
    loss = F.cross_entropy(model(x), y)  # (B, classes) logits -> scalar
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    evaluate(model, bundle, device)
    lap("training_step")

    compact_model(model.cpu().eval(), None, torch.zeros((1, *shape)))
    lap("compaction")
    return parts
