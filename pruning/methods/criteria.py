"""Pruning criteria and the ``Pruner``: score every prunable weight, keep the highest scores.

A pruning step is criterion × scope × granularity (METHODS.md §2). This module holds the
criteria (the ``CRITERIA`` registry) and ``Pruner``, which scores the prunable weights with one
criterion and hands the scores to ``granularity.select`` for the scope and granularity. Global
unstructured pruning with a cheap criterion (magnitude, random), the per-step hot path of a
schedule, takes ``Pruner._prune_live`` instead: it keeps the last mask in flat form and looks
only for the few weights a step removes, with the same result as ``select``. Scores
are "higher = keep"; weights the current mask has already pruned score −inf, so pruning is
monotone (the new mask is a subset of the old one).

Criteria (each cites its paper in its registered description, which the app shows):

- ``magnitude`` |w| — Han et al. 2015, "Learning both Weights and Connections for Efficient
  Neural Networks" (arXiv 1506.02626).
- ``random`` — uniform scores from a ``torch.Generator`` seeded with the Pruner's seed (the
  baseline of Frankle et al. 2021, arXiv 2009.08576, and Liu et al. 2022, arXiv 2202.02643).
- ``snip`` |g ⊙ w| on one batch — Lee et al. 2019, "SNIP: Single-shot Network Pruning based on
  Connection Sensitivity" (arXiv 1810.02340).
- ``grasp`` — Wang et al. 2020, "Picking Winning Tickets Before Training by Preserving Gradient
  Flow" (arXiv 2002.07376): S = −w ⊙ (H g), the largest S are removed, so the keep score is
  w ⊙ (H g). H g is a Hessian-vector product by double backward, on logits divided by a
  temperature of 200, over a few samples per class taken from the batch.
- ``synflow`` — Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
  conserving synaptic flow" (arXiv 2006.05467): |w ⊙ ∂R/∂w| with R = 1ᵀ(∏_l |W_l|)1, evaluated
  on an all-ones input with every weight and buffer replaced by its absolute value, in eval mode,
  iterated: at step k of n the kept fraction is ρ^(−k/n) (ρ = compression ratio).
- ``taylor`` — Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning" (arXiv
  1906.10771), first-order form from their 2017 paper (arXiv 1611.06440): Σ_b (g_b ⊙ w)² summed
  over a few training mini-batches b, each with its own gradient g_b.

Scoring never modifies the model. Magnitude and random only read the weights. The gradient-based
criteria run on a deep copy of the model with the current mask applied (so they score the
network that is actually trained), dropout switched off (scores must not depend on the global
RNG), BatchNorm in the model's own mode (batch statistics while training) and gradients taken
with ``torch.autograd.grad`` on that copy; SynFlow runs on its copy in eval mode and float64 (the
product of absolute weights overflows float32 in deep nets). The model's weights, gradients,
buffers and training flag are therefore exactly as they were.

Interpretation (said in the descriptions too): the papers score once, at initialisation. Here a
criterion can also be re-applied during training by a schedule; each re-application scores the
current masked network and prunes further from the current mask. SynFlow's geometric steps then
run from the current density to the target density, ρ^(−k/n) relative to the current mask.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from pruning.config import Bounds, setting
from pruning.masks import Mask, prunable_parameters
from pruning.methods.granularity import (GRANULARITIES, SCOPES, common_dtype, lowest_entries,
                                          make_finite_, nm_room, prune_count, sanitize,
                                          select as select_mask)
from pruning.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]


def keep_going() -> None:
    """The default ``check_stop``: nothing asks the scoring to stop."""


@dataclass(frozen=True)
class ScoreRequest:
    """What a criterion gets. ``model`` is the caller's model (read only) for cheap criteria and a
    private masked copy for expensive ones; ``params`` are its prunable weights by name."""
    model: nn.Module
    params: Mapping[str, nn.Parameter]
    alive: Mapping[str, torch.Tensor]  # current mask, bool, on the weights' device
    target: float
    batch: Batch | None
    config: Any
    seed: int
    select: Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor], float],
                     dict[str, torch.Tensor]]
    # Raises (the run's RunStopped) when the run should end; criteria call it before every
    # forward/backward pass, so a stop lands within one pass even in SynFlow's 100 iterations.
    check_stop: Callable[[], None] = keep_going


@dataclass(frozen=True)
class Criterion:
    """A registered criterion: ``score(request) -> {name: scores}``, higher = keep."""
    name: str
    score: Callable[[ScoreRequest], dict[str, torch.Tensor]]
    expensive: bool  # needs forward/backward passes (snip, grasp, synflow, taylor)
    signed: bool = False  # scores may be negative and the sign matters (grasp)


CRITERIA: Registry[Criterion] = Registry("criterion")


def _register(name: str, *, expensive: bool, description: str, config: type | None = None,
              signed: bool = False):
    def decorator(fn):
        CRITERIA.register(name, config=config, description=description)(
            Criterion(name, fn, expensive, signed))
        return fn
    return decorator


# ---------------------------------------------------------------------------------------------
# Config dataclasses (the app builds its widgets from these; the CLI fills them from --param)

@dataclass(frozen=True)
class GraspConfig:
    temperature: float = setting(200.0, label="temperature T",
                                 help="logits are divided by T before the loss (paper: 200)",
                                 bounds=Bounds(0, None, low_open=True), step=10.0)
    samples_per_class: int = setting(  # bounded: the scoring batch grows with it
        10, label="samples per class", help="at most this many examples of each class are taken from the batch",
        bounds=Bounds(1, 1000))

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.samples_per_class < 1:
            raise ValueError(f"samples_per_class must be at least 1, got {self.samples_per_class}")


@dataclass(frozen=True)
class SynflowConfig:
    iterations: int = setting(  # bounded: each iteration is a forward and backward pass
        100, label="iterations", help="geometric pruning steps per call (paper: 100)", bounds=Bounds(1, 1000))

    def __post_init__(self):
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")


@dataclass(frozen=True)
class TaylorConfig:
    # Training mini-batches whose (g ⊙ w)² are summed (Molchanov et al. 2019 accumulate over
    # the mini-batches between pruning steps); the scheduled pruner hands over the last ones.
    batches: int = setting(4, label="batches", help="training mini-batches whose (g·w)² are summed",
                           bounds=Bounds(1, 1000))

    def __post_init__(self):
        if self.batches < 1:
            raise ValueError(f"batches must be at least 1, got {self.batches}")


# ---------------------------------------------------------------------------------------------
# Helpers for the gradient-based criteria

def _require_batch(request: ScoreRequest, name: str) -> Batch:
    if request.batch is None:
        raise ValueError(f"criterion {name!r} needs a batch of training data to score")
    x, y = request.batch
    return x, y


def _grad(output: torch.Tensor, params: list[torch.Tensor], create_graph: bool = False):
    """d output / d params; a parameter the output does not depend on gets zeros."""
    return torch.autograd.grad(output, params, create_graph=create_graph, allow_unused=True,
                               materialize_grads=True)


def _task_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               temperature: float = 1.0) -> torch.Tensor:
    logits = model(x)  # (B, classes)
    return F.cross_entropy(logits / temperature, y)


def _scoring_copy(model: nn.Module, alive: Mapping[str, torch.Tensor],
                  grad_names: list[str]) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A deep copy with the mask applied, dropout off and gradients enabled only for grad_names.

    Working on a copy is what guarantees that scoring leaves the caller's weights, gradients,
    BatchNorm running statistics and training flag untouched.
    """
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()  # deterministic scores, no draw from the global RNG
    params = dict(clone.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.grad = None
            p.requires_grad_(False)
        for name, keep in alive.items():
            params[name].mul_(keep.to(params[name].dtype))
        for name in grad_names:
            params[name].requires_grad_(True)
    return clone, params


# ---------------------------------------------------------------------------------------------
# Criteria

@_register("magnitude", expensive=False, description=(
    "Magnitude pruning (Han et al. 2015, \"Learning both Weights and Connections for Efficient "
    "Neural Networks\", arXiv 1506.02626): a weight's score is its absolute value |w|, and the "
    "smallest are removed. Cheap enough to re-prune at every optimizer step, so it follows a "
    "schedule's curve smoothly; a weight pruned once stays pruned."))
def magnitude(request: ScoreRequest) -> dict[str, torch.Tensor]:
    return {name: p.detach().abs() for name, p in request.params.items()}


@_register("random", expensive=False, description=(
    "Random pruning: every weight gets a uniform random score from a generator seeded with the "
    "run's seed, so the same seed prunes the same weights. The baseline that pruning-at-"
    "initialisation criteria must beat (Frankle et al. 2021, \"Pruning Neural Networks at "
    "Initialization: Why are We Missing the Mark?\", arXiv 2009.08576; Liu et al. 2022, "
    "\"The Unreasonable Effectiveness of Random Pruning\", arXiv 2202.02643). Re-applied during "
    "a schedule, the same random order is used each time, so pruning stays consistent."))
def random_scores(request: ScoreRequest) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(request.seed)
    return {name: torch.rand(p.shape, generator=generator).to(p.device)
            for name, p in request.params.items()}


@_register("snip", expensive=True, description=(
    "SNIP (Lee et al. 2019, \"SNIP: Single-shot Network Pruning based on Connection "
    "Sensitivity\", arXiv 1810.02340): a weight's score is the connection sensitivity |g ⊙ w|, "
    "the gradient of the loss on one batch times the weight, i.e. how much the loss would change "
    "if the connection were removed. The paper prunes once at initialisation; here it can also "
    "be re-applied during training, scoring the current masked network."))
def snip(request: ScoreRequest) -> dict[str, torch.Tensor]:
    x, y = _require_batch(request, "snip")
    names = list(request.params)
    request.check_stop()
    grads = _grad(_task_loss(request.model, x, y), [request.params[n] for n in names])
    return {n: (g * request.params[n]).detach().abs() for n, g in zip(names, grads)}


@_register("grasp", expensive=True, signed=True, config=GraspConfig, description=(
    "GraSP (Wang et al. 2020, \"Picking Winning Tickets Before Training by Preserving Gradient "
    "Flow\", arXiv 2002.07376): scores S = −w ⊙ (H g), where g is the loss gradient and H the "
    "Hessian, and removes the weights with the largest S, the ones whose removal reduces "
    "gradient flow the least (or even increases it). H g is computed exactly with a "
    "Hessian-vector product (double backward) over all conv and linear weights, on logits "
    "divided by a temperature (200, as in the paper), using a few samples per class taken from "
    "the batch. Applied at initialisation in the paper; here also re-applicable during training."))
def grasp(request: ScoreRequest) -> dict[str, torch.Tensor]:
    config: GraspConfig = request.config
    x, y = _require_batch(request, "grasp")
    # A few samples per class (the paper draws them from the data loader; here, from the batch).
    picks = [torch.nonzero(y == c).flatten()[:config.samples_per_class] for c in torch.unique(y)]
    index = torch.cat(picks).sort().values
    x, y = x[index], y[index]
    # g and H·g range over every conv/linear weight (first and last layers included), as in the
    # paper; only the prunable ones are scored.
    weights = prunable_parameters(request.model, include_first_last=True)
    for p in weights.values():
        p.requires_grad_(True)
    names = list(weights)
    request.check_stop()
    grads = _grad(_task_loss(request.model, x, y, config.temperature),
                  [weights[n] for n in names], create_graph=True)
    # z = gᵀ·stopgrad(g), with g restricted to the live weights; dz/dw = H·g.
    z = sum((g * (g.detach() * request.alive[n] if n in request.alive else g.detach())).sum()
            for n, g in zip(names, grads))
    request.check_stop()
    hg = dict(zip(names, _grad(z, [weights[n] for n in names])))
    # Keep score = −S = w ⊙ (H g): the largest S are removed, the largest −S kept.
    return {n: (p.detach() * hg[n]).detach() for n, p in request.params.items()}


@_register("synflow", expensive=True, config=SynflowConfig, description=(
    "SynFlow (Tanaka et al. 2020, \"Pruning neural networks without any data by iteratively "
    "conserving synaptic flow\", arXiv 2006.05467): data-free. With every weight replaced by its "
    "absolute value and an all-ones input, R = 1ᵀ(∏ |W_l|)1 is the total 'synaptic flow'; a "
    "weight's score is |w ⊙ ∂R/∂w|. Pruning is iterated (100 steps by default) with the kept "
    "fraction ρ^(−k/n) at step k, re-scoring after each step, which avoids disconnecting whole "
    "layers. Computed on a copy in eval mode and float64; the model's weights and signs are "
    "untouched. When re-applied during training the steps run from the current density to the "
    "new target."))
def synflow(request: ScoreRequest) -> dict[str, torch.Tensor]:
    config: SynflowConfig = request.config
    x, _ = _require_batch(request, "synflow")
    names = list(request.params)
    clone = request.model
    clone.eval()
    # float64 keeps ∏|W_l| finite in deep nets; MPS has no float64.
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    clone.to(dtype)
    with torch.no_grad():
        for tensor in clone.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()  # "linearise": every weight and buffer by its absolute value
    params = dict(clone.named_parameters())
    base = {n: params[n].detach().clone() for n in names}
    ones = torch.ones((1, *x.shape[1:]), dtype=dtype, device=x.device)  # (1, C, H, W)
    alive = dict(request.alive)
    live_total = sum(int(a.sum()) for a in alive.values())
    total = sum(a.numel() for a in alive.values())
    start_density = live_total / max(total, 1)
    final_density = 1.0 - request.target
    # Nothing left to prune (e.g. Pruner.scores at target 0): one pass gives the plain scores.
    iterations = config.iterations if final_density < start_density else 1
    scores: dict[str, torch.Tensor] = {}
    for k in range(1, iterations + 1):
        request.check_stop()
        with torch.no_grad():
            for n in names:
                params[n].copy_(base[n] * alive[n])
        flow = clone(ones).sum()  # R = 1ᵀ(∏|W_l|)1
        grads = _grad(flow, [params[n] for n in names])
        raw = {n: (g * params[n]).detach().abs() for n, g in zip(names, grads)}
        # Rescale by the largest score: ranking unchanged, values safe in any later arithmetic.
        scale = torch.stack([r.max() for r in raw.values()]).max().clamp_min(1e-300)
        scores = {n: torch.where(alive[n], r / scale, torch.full_like(r, float("-inf")))
                  for n, r in raw.items()}
        if k < iterations:
            # kept fraction ρ^(−k/n), measured from the density the mask already has
            density = start_density * (final_density / start_density) ** (k / iterations)
            alive = request.select(scores, alive, 1.0 - density)
    return scores


@_register("taylor", expensive=True, config=TaylorConfig, description=(
    "First-order Taylor importance in the form of Molchanov et al. 2019 (\"Importance "
    "Estimation for Neural Network Pruning\", arXiv 1906.10771; first-order criterion from their "
    "2017 paper, arXiv 1611.06440): the squared estimate of the loss change when a weight is "
    "removed, (g·w)², with g the gradient of one training mini-batch's loss, summed over the "
    "last few mini-batches (batches, default 4: the step's own and the ones before it; at the "
    "start, the first ones of the epoch). Squaring per mini-batch means that weights whose "
    "gradient changes sign between batches still count, unlike SNIP's single |g·w|."))
def taylor(request: ScoreRequest) -> dict[str, torch.Tensor]:
    """Σ_b (g_b ⊙ w)² over the mini-batches b stacked in ``request.batch``.

    The batch holds ``config.batches`` mini-batches concatenated (fewer when it has fewer
    samples); each gives its own gradient g_b of the mean loss over that mini-batch.
    """
    config: TaylorConfig = request.config
    x, y = _require_batch(request, "taylor")
    names = list(request.params)
    weights = [request.params[n] for n in names]
    totals = [torch.zeros_like(w) for w in weights]
    for xb, yb in zip(torch.chunk(x, config.batches), torch.chunk(y, config.batches)):
        request.check_stop()
        for total, g, w in zip(totals, _grad(_task_loss(request.model, xb, yb), weights), weights):
            total += (g * w).detach().pow(2)
    return dict(zip(names, totals))


# ---------------------------------------------------------------------------------------------

class Pruner:
    """criterion × scope × granularity; ``pruner(model, mask, target, batch) -> Mask``.

    ``target`` is the sparsity to reach over the prunable weights (METHODS.md §2). The result is
    a subset of ``mask``; unstructured pruning keeps exactly ``n − round(target·n)`` weights
    (globally, or in every layer for layerwise scope), N:M and channel pruning meet the target to
    within one group (see ``granularity.py``). The model is never modified.
    """

    def __init__(self, criterion: str = "magnitude", criterion_config: Any = None,
                 scope: str = "global", granularity: str = "unstructured",
                 nm: tuple[int, int] = (2, 4), include_first_last: bool = False, seed: int = 0,
                 channel_p: float = 2.0, check_stop: Callable[[], None] = keep_going):
        entry = CRITERIA.entry(criterion)
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; choose global or layerwise")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; "
                             f"choose unstructured, nm or channel")
        n, m = nm
        if not 0 < n < m:
            raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
        if not channel_p > 0:
            raise ValueError(f"channel norm p must be positive, got {channel_p}")
        if entry.config is None:
            if criterion_config is not None:
                raise ValueError(f"criterion {criterion!r} takes no settings")
        elif criterion_config is None:
            criterion_config = entry.config()
        elif not isinstance(criterion_config, entry.config):
            raise ValueError(f"criterion {criterion!r} needs a {entry.config.__name__}, "
                             f"got {type(criterion_config).__name__}")
        self.criterion = entry.obj
        self.criterion_config = criterion_config
        self.scope = scope
        self.granularity = granularity
        self.nm = (int(n), int(m))
        self.include_first_last = include_first_last
        self.seed = seed
        self.channel_p = channel_p
        self.check_stop = check_stop  # the run's RunContext.check_stop, handed to the criterion
        # The last mask _prune_live returned, with its kept positions (one run's pruner only).
        self._live: _LiveWeights | None = None

    @property
    def expensive(self) -> bool:
        return self.criterion.expensive

    @property
    def batches(self) -> int:
        """Training mini-batches the criterion wants stacked into its batch (Taylor: several)."""
        return int(getattr(self.criterion_config, "batches", 1))

    def __repr__(self) -> str:
        extra = f" {self.nm[0]}:{self.nm[1]}" if self.granularity == "nm" else ""
        return (f"Pruner({self.criterion.name}, {self.scope}, {self.granularity}{extra}, "
                f"seed={self.seed})")

    def initial_mask(self, model: nn.Module) -> Mask:
        return Mask.ones_like(model, self.include_first_last)

    def select(self, scores: Mapping[str, torch.Tensor], alive: Mapping[str, torch.Tensor],
               target: float) -> dict[str, torch.Tensor]:
        """Scores -> the new mask for ``target`` with this pruner's scope and granularity."""
        return select_mask(scores, alive, target, scope=self.scope, granularity=self.granularity,
                           nm=self.nm, channel_p=self.channel_p, signed=self.criterion.signed)

    def _nothing_to_do(self, mask: Mask, target: float) -> bool:
        """True when the mask already meets the target (pruning never grows a mask back), or
        when N:M has converted every group and cannot prune further: then nothing is scored."""
        tensors = list(mask.values())
        units = [tensors] if self.scope == "global" else [[t] for t in tensors]
        for unit in units:
            total = sum(t.numel() for t in unit)
            pruned = total - sum(int(t.sum()) for t in unit)
            if prune_count(total, target) > pruned and (
                    self.granularity != "nm" or sum(nm_room(t, self.nm) for t in unit) > 0):
                return False
        return True

    def _check(self, model: nn.Module, mask: Mask | None) -> tuple[dict[str, nn.Parameter], Mask]:
        params = prunable_parameters(model, self.include_first_last)
        if mask is None:
            mask = self.initial_mask(model)
        if set(mask) != set(params):
            raise ValueError("the mask does not cover this model's prunable weights: "
                             f"mask has {sorted(mask)}, model has {sorted(params)}")
        return params, mask

    def _score(self, model, params, mask, target, batch):
        """(scores on the weights' device, alive masks on the same device)."""
        device = next(iter(params.values())).device
        alive = {name: mask[name].to(device) for name in params}
        if self.criterion.expensive:
            scored_model, all_params = _scoring_copy(model, alive, list(params))
            scored = {name: all_params[name] for name in params}
        else:
            scored_model, scored = model, params
        request = ScoreRequest(scored_model, scored, alive, target, batch,
                               self.criterion_config, self.seed, self.select, self.check_stop)
        with torch.enable_grad() if self.criterion.expensive else torch.no_grad():
            return self.criterion.score(request), alive

    def scores(self, model: nn.Module, mask: Mask | None = None, batch: Batch | None = None,
               target: float = 0.0) -> dict[str, torch.Tensor]:
        """The criterion's scores per prunable weight (CPU; −inf where ``mask`` pruned already).

        ``target`` only matters to SynFlow, whose iterations run towards it; with the default 0
        it returns the plain (single-pass) SynFlow scores. For plots and tests; the model is not
        modified.
        """
        params, mask = self._check(model, mask)
        scores, alive = self._score(model, params, mask, target, batch)
        return {name: s.cpu() for name, s in sanitize(scores, alive).items()}

    def __call__(self, model: nn.Module, mask: Mask | None, target: float,
                 batch: Batch | None = None) -> Mask:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target sparsity must be in [0, 1], got {target}")
        if self.scope == "global" and self.granularity == "unstructured" \
                and not self.criterion.expensive:
            return self._prune_live(model, mask, target, batch)
        params, mask = self._check(model, mask)
        if self._nothing_to_do(mask, target):
            return mask
        scores, alive = self._score(model, params, mask, target, batch)
        keep = self.select(scores, alive, target)
        return Mask({name: keep[name].cpu() for name in params})

    def _prune_live(self, model: nn.Module, mask: Mask | None, target: float,
                    batch: Batch | None) -> Mask:
        """Global unstructured pruning with a cheap criterion, found among the live weights only.

        The same mask as ``select`` (pruned weights rank below every live one there and ties
        keep the earlier weight; ``lowest_entries`` keeps both rules), but a schedule that prunes
        at every step removes a few weights each time, and finding those few is much cheaper
        than ranking every weight. When it is handed the mask it returned last time, it reuses
        that mask's flat form instead of building it again.
        """
        state = self._live
        if state is None or state.mask is not mask or not state.same_weights(model):
            params, mask = self._check(model, mask)
            if not params:  # nothing prunable: nothing to do
                return mask
            state = self._live = _LiveWeights(model, params, mask)
        total = state.flat.numel()
        n_drop = state.kept - (total - prune_count(total, target))
        if n_drop <= 0:  # already there; a mask never grows back
            return state.mask
        request = ScoreRequest(model, state.params, state.alive(), target, batch,
                               self.criterion_config, self.seed, self.select, self.check_stop)
        with torch.no_grad():
            scores = self.criterion.score(request)
        state.prune(lowest_entries(state.ranked(scores), n_drop))
        return state.mask

    def device_masks(self, mask: Mask, dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
        """``mask`` as 1.0/0.0 tensors on the weights' device, without copying, when it is the
        mask this pruner's per-step path returned last (float32 weights); else None. The
        tensors are updated in place by the next pruning step: read them, never keep them."""
        state = self._live
        if state is None or state.mask is not mask or dtype != state.keep.dtype:
            return None
        return state.keep_views


class _LiveWeights:
    """The last mask of ``Pruner._prune_live`` as one flat vector over the prunable weights
    (layer order, row-major), with +inf where it prunes, on the weights' device.

    Owned by one Pruner and updated in place at each step (the hot loop of per-step pruning
    then allocates little and sweeps less memory between training steps).
    """

    def __init__(self, model: nn.Module, params: dict[str, nn.Parameter], mask: Mask):
        self.model, self.params, self.mask = model, params, mask
        self.flat = torch.cat([mask[name].reshape(-1).cpu() for name in params])  # (n,) bool
        device = next(iter(params.values())).device
        kept = self.flat.to(device=device, dtype=torch.float32)
        self.pruned_inf = (1.0 - kept) / kept   # (n,) +inf where pruned, 0 where kept
        # (n,) 1.0 kept / 0.0 pruned on the device, updated in place: its per-layer views are the
        # masks that training multiplies into the weights after every step (no copies per step)
        self.keep = kept
        self.keep_views = {name: piece.view(p.shape) for (name, p), piece in zip(
            params.items(), kept.split([p.numel() for p in params.values()]))}
        self.kept = int(self.flat.sum())
        self._ranked: torch.Tensor | None = None  # reused buffer of ``ranked``

    def same_weights(self, model: nn.Module) -> bool:
        """True for the model this state was built for, its weights still on the same device."""
        return model is self.model and next(iter(self.params.values())).device == \
            self.pruned_inf.device

    def alive(self) -> Mapping[str, torch.Tensor]:
        """The mask per layer on the weights' device, built only if the criterion reads it
        (magnitude and random do not)."""
        return _OnFirstUse(self._alive_tensors)

    def _alive_tensors(self) -> dict[str, torch.Tensor]:
        pieces = self.flat.split([p.numel() for p in self.params.values()])
        return {name: piece.view(p.shape).to(self.pruned_inf.device)
                for (name, p), piece in zip(self.params.items(), pieces)}

    def ranked(self, scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(n,) the scores made finite as in ``sanitize``, +inf where already pruned (never
        among the lowest while a live weight remains). Valid until the next call."""
        dtype = common_dtype(scores)
        pieces = [scores[name].detach().reshape(-1).to(dtype) for name in self.params]
        if self._ranked is None or self._ranked.dtype != dtype:
            self._ranked = torch.empty(self.flat.numel(), dtype=dtype,
                                       device=self.pruned_inf.device)
        torch.cat(pieces, out=self._ranked)
        return make_finite_(self._ranked).add_(self.pruned_inf)

    def prune(self, removed: torch.Tensor) -> None:
        """Prune the flat positions ``removed`` (live ones) too; ``mask`` becomes the result."""
        self.pruned_inf[removed] = float("inf")
        self.keep[removed] = 0.0
        removed = removed.cpu()
        self.flat[removed] = False
        self.kept -= removed.numel()
        pieces = self.flat.split([p.numel() for p in self.params.values()])
        self.mask = Mask({name: piece.view(p.shape)
                          for (name, p), piece in zip(self.params.items(), pieces)})


class _OnFirstUse(Mapping):
    """A read-only mapping that calls ``build()`` the first time it is read."""

    def __init__(self, build: Callable[[], dict]):
        self._build, self._built = build, None

    def _data(self) -> dict:
        if self._built is None:
            self._built = self._build()
        return self._built

    def __getitem__(self, key):
        return self._data()[key]

    def __iter__(self):
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())
