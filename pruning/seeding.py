"""Randomness of one run without process-wide state: ``with private_rng(generator): ...``.

PyTorch modules initialise their weights from the global RNG (``nn.init`` calls made without a
generator). Seeding that global RNG per run is unsafe when several runs share a process (the app
trains each user's job in its own thread): the runs would draw from one stream. Inside
``private_rng`` every random draw of the current thread that names no generator of its own uses
the given one instead; a ``TorchFunctionMode`` lives on a per-thread stack, so other threads are
untouched. A fresh CPU generator seeded with s yields the same numbers as ``torch.manual_seed(s)``,
so weights initialised this way equal those of the global-seeding scheme.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

#: samplers that take ``generator=`` but are often called without it (``nn.init`` functions pass
#: ``generator=None`` explicitly and are caught by that)
_SAMPLERS = frozenset({
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.random_, torch.Tensor.bernoulli_,
    torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.log_normal_,
    torch.Tensor.cauchy_, torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal,
    torch.bernoulli, torch.multinomial,
})


class private_rng(TorchFunctionMode):
    """Route this thread's unseeded random draws to ``generator`` while the block runs."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if ("generator" in kwargs or func in _SAMPLERS) and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator
        return func(*args, **kwargs)
