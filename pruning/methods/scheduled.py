"""Schedule-driven pruning with a criterion × scope × granularity (METHODS.md §1–§2).

During training the schedule gives a target sparsity at each step's progress; every
``prune_every`` optimizer steps the pruner recomputes the mask to exactly that target (monotone:
pruned weights stay pruned), and after every step the mask is re-applied so that optimizer
momentum cannot revive pruned weights. Criteria that need gradients or many passes (SNIP, GraSP,
SynFlow, Taylor) re-score only when the target has grown by at least a quarter of a percent,
which keeps a one-cycle run affordable without changing where it ends.

Magnitude pruning: Han et al. 2015; SNIP: Lee et al. 2019 (arXiv 1810.02340); GraSP: Wang et al.
2020 (arXiv 2002.07376); SynFlow: Tanaka et al. 2020 (arXiv 2006.05467); Taylor: (g ⊙ w)²
summed over the last few training mini-batches (Molchanov et al. 2019).
"""
from __future__ import annotations

import itertools
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn

from pruning.masks import Mask
from pruning.methods.base import METHODS, Method, MethodResult
from pruning.methods.criteria import CRITERIA, Criterion, Pruner, ScoreRequest, keep_going
from pruning.schedules import schedule_from_config
from pruning.training import TrainHooks, fit

# Re-score at most once per this much target growth for criteria that are costly to evaluate.
EXPENSIVE_RESCORE_STEP = 0.0025


class ScheduledHooks(TrainHooks):
    """Keeps a Mask that follows ``schedule`` during ``fit``."""

    def __init__(self, pruner: Pruner, schedule, prune_every: int, first_batches):
        self.pruner = pruner
        self.schedule = schedule
        self.prune_every = prune_every
        # The last pruner.batches training batches, stacked for criteria that sum over several
        # mini-batches (Taylor); one batch for the others.
        self.recent = deque(first_batches, maxlen=pruner.batches if pruner is not None else 1)
        self.current: Mask | None = None
        self.device_masks: dict[str, torch.Tensor] = {}
        self._masked: tuple[list, list] = ([], [])  # (weights, their masks) for _apply
        self.params: dict[str, nn.Parameter] = {}
        self.target = 0.0
        self.pruned_target = -1.0

    def on_train_start(self, model, total_steps):
        self.params = dict(model.named_parameters())
        self.current = self.pruner.initial_mask(model)
        self._prune_to(model, self.schedule(0.0), self._stacked())
        self._apply()

    def _stacked(self):
        if len(self.recent) == 1:
            return self.recent[0]
        return tuple(torch.cat(parts) for parts in zip(*self.recent))

    def _prune_to(self, model, target: float, batch) -> None:
        """Recompute the mask for ``target`` (the caller applies it to the weights)."""
        self.target = target
        if target <= 0.0 and self.pruned_target < 0:
            self._cache(model)
            return
        grown = target - max(self.pruned_target, 0.0)
        if self.pruner.expensive and 0 <= self.pruned_target and grown < EXPENSIVE_RESCORE_STEP \
                and target < self.schedule.final:
            return
        if target != self.pruned_target:
            self.current = self.pruner(model, self.current, target, batch)
            self.pruned_target = target
            self._cache(model)

    def _cache(self, model) -> None:
        if len(self.current) == 0:
            self.device_masks, self._masked = {}, ([], [])
            return
        weight = self.params[next(iter(self.current))]
        # the per-step pruner keeps its mask on the device already: use it without a copy
        own = (None if self.pruner is None
               else self.pruner.device_masks(self.current, weight.dtype))
        self.device_masks = own or self.current.to(weight.device, weight.dtype)
        names = list(self.device_masks)
        self._masked = ([self.params[n] for n in names], [self.device_masks[n] for n in names])

    @torch.no_grad()
    def _apply(self) -> None:
        params, masks = self._masked
        if params:
            torch._foreach_mul_(params, masks)  # one call for every layer (as optimizers do)

    def after_step(self, model, step, progress, batch):
        if self.pruner.batches > 1:
            self.recent.append(batch)
        if step % self.prune_every == 0 or progress >= 1.0:
            self._prune_to(model, self.schedule(progress),
                           self._stacked() if self.pruner.batches > 1 else batch)
        self._apply()

    def mask(self):
        return self.current

    def target_sparsity(self):
        return self.target


class ScheduledPruning(Method):
    """Base of the criterion methods; ``criterion`` names an entry of CRITERIA."""
    criterion = "magnitude"
    follows_schedule = True

    def build_pruner(self, check_stop: Callable[[], None] = keep_going) -> Pruner:
        c = self.config
        return Pruner(criterion=self.criterion, criterion_config=self.method_config,
                      scope=c.scope, granularity=c.granularity, nm=(c.nm_n, c.nm_m),
                      include_first_last=c.prune_first_last, seed=c.seed, check_stop=check_stop)

    def run(self, model, ctx) -> MethodResult:
        ctx.total_epochs = ctx.config.epochs
        pruner = self.build_pruner(ctx.check_stop)
        loader = ctx.data.batches("train", ctx.config.batch_size, shuffle=True,
                                  generator=ctx.generator(salt=-1))
        first_batches = [tuple(t.to(ctx.device) for t in batch)
                         for batch in itertools.islice(loader, pruner.batches)]
        hooks = ScheduledHooks(pruner, schedule_from_config(ctx.config),
                               ctx.config.prune_every, first_batches)
        model.to(ctx.device)
        fit(model, ctx, epochs=ctx.config.epochs, hooks=hooks, phase="train")
        return MethodResult(model, hooks.mask(), {})


def _register_method_for(name: str) -> None:
    """Offer criterion ``name`` as a schedule-driven method of the same name."""
    entry = CRITERIA.entry(name)
    cls = type(f"{name.title()}Pruning", (ScheduledPruning,),
               {"criterion": name, "description": entry.description,
                "__doc__": entry.description})
    METHODS.register(name, config=entry.config, description=entry.description)(cls)


def register_criterion(name: str, score: Callable[[ScoreRequest], dict[str, torch.Tensor]], *,
                       description: str, expensive: bool = False, signed: bool = False,
                       config: type | None = None) -> None:
    """The one place a new criterion plugs in.

    ``score(request) -> {parameter name: scores}`` (higher = keep). The Pruner ranks with it under
    every scope and granularity, and it becomes a method of the same name that follows the run's
    schedule: the CLI's ``--method`` choices, the Run form, sweeps and the registry-parametrised
    tests all read it from the registries. ``config`` is its settings dataclass (``-p key=value``).
    """
    CRITERIA.register(name, config=config, description=description)(
        Criterion(name, score, expensive, signed))
    _register_method_for(name)


@contextmanager
def registered_criterion(name: str, score: Callable[[ScoreRequest], dict[str, torch.Tensor]], *,
                         description: str, **options: Any) -> Iterator[None]:
    """``register_criterion`` for the duration of a ``with`` block (tests, experiments)."""
    register_criterion(name, score, description=description, **options)
    try:
        yield
    finally:
        METHODS.unregister(name)
        CRITERIA.unregister(name)


for _name in CRITERIA.names():  # the built-in criteria, registered in criteria.py
    _register_method_for(_name)
