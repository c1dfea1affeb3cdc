"""Turning scores into a mask: scope (global | layerwise) × granularity (unstructured | nm | channel).

A pruning step scores every prunable weight (``criteria.py``) and then keeps the highest scores so
that the target sparsity is met (METHODS.md §2). This module is the second half: given per-layer
score tensors, the current mask (``alive``) and a target, it returns the new mask. Pruning is
monotone: entries that are already pruned are never revived, so the new mask is a subset of the
old one, and a target below the current sparsity leaves the mask as it is.

How many weights a target means. For ``n`` weights and target ``s`` the step prunes
``round(s · n)`` of them (Python's round, the convention of ``torch.nn.utils.prune``), i.e. it
keeps ``n − round(s · n)``; this equals ``round((1 − s) · n)`` except at exact halves.

- ``unstructured``: single weights. Exact: the kept count is ``n − round(s·n)`` over all prunable
  weights (global) or in every layer (layerwise). Ties are broken deterministically: among equal
  scores the earlier weight (layer order, then row-major index) is kept.
- ``nm``: N:M sparsity along the input dimension (Mishra et al. 2021, "Accelerating Sparse Deep
  Neural Networks", arXiv 2104.08378; 2:4 is what NVIDIA's sparse tensor cores run). A group is
  M consecutive weights along the input axis — for a convolution, along the input-channel axis
  at one kernel position of one filter. A group is either left as it is or *converted*: only its
  N highest-scoring weights stay. Rule for the target: groups are converted in ascending order of
  their cost (the mean score of the weights the conversion removes; ties by position) until at
  least ``round(s·n)`` weights are pruned, so the target is met to within one group (fewer than
  M − N weights over). Once every group is converted the sparsity is 1 − N/M, the largest N:M
  allows; a higher target is capped there. When the input size is not a multiple of M, the last,
  shorter group of r weights keeps min(N, r) of them (so a depthwise kernel, with one input
  channel, stays dense).
- ``channel``: whole output filters (conv) / neurons (linear), i.e. rows along dim 0. A filter's
  score is the power mean of its weights' scores, (mean |score|^p)^(1/p) with p = 2 by default:
  the Lp norm divided by (weights per filter)^(1/p), so filters of different sizes in different
  layers are compared per weight (a plain Lp norm would favour big filters under global scope).
  Under global scope each layer's filter scores are then divided by their root mean square
  (Molchanov et al. 2017), so a filter is ranked by how weak it is within its own layer and no
  layer is emptied just because its weights are small; a layer's strongest filter is never
  removed. For a signed criterion (GraSP) the plain mean score is used instead, since a norm would throw
  the sign away. Filters are removed lowest score first until at least ``round(s·n)`` weights
  are pruned: the target is met to within one filter.

All selection is vectorised (``torch.topk`` on a concatenated vector, sorts over tiny groups);
the only Python loops run over layers.
"""
from __future__ import annotations

import functools
import math
from typing import Mapping

import numpy as np
import torch

SCOPES = ("global", "layerwise")
GRANULARITIES = ("unstructured", "nm", "channel")

Scores = Mapping[str, torch.Tensor]


def prune_count(total: int, target: float) -> int:
    """How many of ``total`` weights a target sparsity prunes (torch.nn.utils.prune's rounding)."""
    return int(round(target * total))


def kth_largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of a 1-D tensor (1 <= k <= n), exactly, as a 0-d tensor.

    Large vectors use sample-select: a strided sample of ~16k entries brackets the answer
    between two of its order statistics (±4 standard deviations of the sample rank), one pass
    counts what lies above the bracket and gathers what lies inside it, and ``topk`` runs on
    that short list only. If the bracket misses (possible only for adversarial layouts) the
    plain ``topk`` over everything gives the answer, so the result is always exact.
    """
    n = scores.numel()
    if n > _SAMPLE_FROM:
        sample = scores[::n // _SAMPLE_SIZE]
        m = sample.numel()
        rank = k * m / n                               # expected rank of the answer in the sample
        spread = 4.0 * math.sqrt(rank * (1.0 - rank / m)) + 16.0
        upper_rank, lower_rank = max(int(rank - spread), 1), min(int(rank + spread) + 1, m)
        values = torch.topk(sample, lower_rank, sorted=True).values
        upper, lower = values[upper_rank - 1], values[lower_rank - 1]
        n_above = int((scores > upper).sum())
        inside = scores[(scores <= upper) & (scores >= lower)]
        need = k - n_above
        if 1 <= need <= inside.numel():
            return _kth_largest_plain(inside, need)
    return _kth_largest_plain(scores, k)


def _kth_largest_plain(scores: torch.Tensor, k: int) -> torch.Tensor:
    n = scores.numel()
    # whichever of the k largest or the n − k + 1 smallest is the shorter list (faster on CPU)
    if k <= n // 2:
        return torch.topk(scores, k, sorted=False).values.min()
    return torch.topk(scores, n - k + 1, largest=False, sorted=False).values.max()


_SAMPLE_FROM = 1 << 17  # below this many entries a plain topk is as fast
_SAMPLE_SIZE = 1 << 14


def keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of a 1-D tensor; ties go to the lower index.

    Everything above the k-th largest value is kept and the remaining places go to the first
    entries equal to it, so the count is exact and the result does not depend on how ``topk``
    orders ties.
    """
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    threshold = kth_largest(scores, k)
    above = scores > threshold
    ties = scores == threshold
    room = k - int(above.sum())
    if room == int(ties.sum()):  # the usual case: no run of equal scores straddles the cut
        return above | ties
    return above | (ties & (torch.cumsum(ties, 0) <= room))


def lowest_entries(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Ascending positions of the ``count`` lowest entries of a 1-D tensor (0 < count ≤ n): the
    complement of ``keep_top(scores, n − count)``, so among equal scores the later ones go first.

    A pruning step along a schedule removes a few weights out of many. Ranking all of them costs
    a ``topk`` over everything; instead a strided sample gives a bound that about twice
    ``count`` entries lie under, one comparison finds those candidates, and only they are
    ranked. Every entry above the bound is larger than every candidate, so the answer is the
    same; if the sample was unlucky and too few lie under the bound, the full ranking runs.
    """
    n = scores.numel()
    if n >= _FEW_FROM and count <= n // 8:
        stride = max(1, n // _FEW_SAMPLE)
        sample = scores[::stride]
        rank = min(sample.numel(), 2 * count // stride + 8)
        bound = torch.topk(sample, rank, largest=False, sorted=False).values.max()
        candidates = flat_nonzero(scores <= bound)   # (c,) ascending
        if count <= candidates.numel() <= n // 4:
            kept = keep_top(scores.index_select(0, candidates), candidates.numel() - count)
            return candidates[~kept]
    return flat_nonzero(~keep_top(scores, n - count))


def flat_nonzero(flags: torch.Tensor) -> torch.Tensor:
    """Ascending positions of the true entries of a 1-D bool tensor. On the CPU NumPy finds
    them several times faster than ``torch.nonzero`` (10 µs against 70 µs for 100,000
    entries), which counts in a pruning step that runs after every optimizer step."""
    if flags.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(flags.numpy()))
    return flags.nonzero().squeeze(1)


_FEW_FROM = 1 << 13   # below this many entries one topk over all of them is as fast
_FEW_SAMPLE = 1 << 12


def sanitize(scores: Scores, alive: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores in one floating dtype, −inf exactly where already pruned, finite where alive.

    NaN scores of live weights rank lowest among live weights; ±inf become the largest finite
    values. Pruned entries are −inf, strictly below every live one, so they are never chosen while
    any live weight remains (monotonicity).
    """
    dtype = common_dtype(scores)
    return {name: _clean(scores[name], keep, dtype) for name, keep in alive.items()}


def make_finite_(scores: torch.Tensor) -> torch.Tensor:
    """In place: NaN and −inf become the dtype's lowest finite value, +inf its highest (so NaN
    scores rank lowest among live weights, and −inf stays free to mark pruned ones)."""
    info = torch.finfo(scores.dtype)
    return scores.nan_to_num_(nan=info.min, posinf=info.max, neginf=info.min)


def common_dtype(scores: Scores) -> torch.dtype:
    return functools.reduce(torch.promote_types, (s.dtype for s in scores.values()), torch.float32)


def _clean(score: torch.Tensor, keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # −inf where pruned, as s − (1 − k)/k: a bool-conditioned ``torch.where`` takes several
    # times longer on CPU, and this runs at every pruning step.
    kept = keep.to(dtype)
    return make_finite_(score.detach().to(dtype, copy=True)) - (1.0 - kept) / kept


def select(scores: Scores, alive: Mapping[str, torch.Tensor], target: float, *, scope: str,
           granularity: str, nm: tuple[int, int] = (2, 4), channel_p: float = 2.0,
           signed: bool = False) -> dict[str, torch.Tensor]:
    """The new mask (bool tensors on the scores' device) for ``target`` sparsity.

    ``scores``: per layer, higher = more important, same shape as the weight; ``alive``: the
    current mask (bool, same device). The result is a subset of ``alive``.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; "
                         f"choose one of: {', '.join(GRANULARITIES)}")
    if granularity == "unstructured" and scope == "global":
        return _select_global_unstructured(scores, alive, target)
    clean = sanitize(scores, alive)
    if granularity == "unstructured":
        return {name: keep_top(s.reshape(-1), s.numel() - prune_count(s.numel(), target))
                .view_as(s) & alive[name] for name, s in clean.items()}
    if granularity == "nm":
        groups = {name: _nm_groups(s, alive[name], nm) for name, s in clean.items()}
    else:
        groups = {name: _channel_groups(s, alive[name], channel_p, signed)
                  for name, s in clean.items()}
        if scope == "global":
            _normalise_layer_costs(groups)
        for g in groups.values():
            _protect_strongest(g)
    return _select_groups(groups, alive, target, scope)


def _select_global_unstructured(scores, alive, target):
    # One ranking over the concatenation of all layers. (Per-step pruning along a schedule
    # takes Pruner._prune_live instead, which gives the same masks.)
    names = list(alive)
    dtype = common_dtype(scores)
    live = torch.cat([alive[n].reshape(-1) for n in names])
    flat = _clean(torch.cat([scores[n].reshape(-1).to(dtype) for n in names]), live, dtype)
    # Where the target asks for more weights than are alive, the extra picks land on −inf
    # entries and are dropped by ``& live``: the mask never grows back.
    keep = keep_top(flat, flat.numel() - prune_count(flat.numel(), target)) & live
    out, offset = {}, 0
    for n in names:
        size = alive[n].numel()
        out[n] = keep[offset:offset + size].view_as(alive[n])
        offset += size
    return out


class _Groups:
    """One layer's groups: what converting each would cost and remove, and the result if it did.

    ``cost`` (G,): lower is converted first (+inf when converting removes nothing);
    ``gain`` (G,): live weights the conversion removes; ``apply(convert)`` -> the layer's mask.
    """

    def __init__(self, cost, gain, apply):
        self.cost, self.gain, self.apply = cost, gain, apply


def _nm_groups(s: torch.Tensor, alive: torch.Tensor, nm: tuple[int, int]) -> _Groups:
    n_keep, m = nm
    # Input axis last: linear (out, in) stays; conv (out, in, *k) -> (out, *k, in).
    s_t, a_t = s.movedim(1, -1), alive.movedim(1, -1)
    inputs = s_t.shape[-1]
    pad = (-inputs) % m
    # Padding is −inf / not alive: never kept, cut off again in ``apply`` (a short last group of
    # r weights therefore keeps min(N, r)).
    s_g = torch.nn.functional.pad(s_t, (0, pad), value=float("-inf")).reshape(-1, m)  # (G, M)
    a_g = torch.nn.functional.pad(a_t, (0, pad), value=False).reshape(-1, m)          # (G, M)
    kept_if_converted = (_rank_in_rows(s_g) < n_keep) & a_g
    removed = a_g & ~kept_if_converted
    gain = removed.sum(1)
    total = torch.where(removed, s_g, torch.zeros_like(s_g)).sum(1)
    cost = torch.where(gain > 0, total / gain.clamp_min(1), torch.full_like(total, float("inf")))

    def apply(convert: torch.Tensor) -> torch.Tensor:
        new = torch.where(convert[:, None], kept_if_converted, a_g)
        new = new.reshape(*s_t.shape[:-1], inputs + pad)[..., :inputs]
        return new.movedim(-1, 1).contiguous()

    return _Groups(cost, gain, apply)


def nm_room(alive: torch.Tensor, nm: tuple[int, int]) -> int:
    """How many more weights N:M conversion could remove from a layer's mask (0: all converted)."""
    n_keep, m = nm
    live = alive.movedim(1, -1)                       # input axis last, as in _nm_groups
    pad = (-live.shape[-1]) % m
    counts = torch.nn.functional.pad(live, (0, pad), value=False).reshape(-1, m).sum(1)
    return int((counts - counts.clamp(max=n_keep)).sum())


def _rank_in_rows(s: torch.Tensor) -> torch.Tensor:
    """(G, M) -> each entry's rank in its row, 0 = largest; ties: the earlier entry ranks first."""
    g, m = s.shape
    if m > 8:
        order = torch.sort(s, dim=1, descending=True, stable=True).indices
        return torch.empty_like(order).scatter_(
            1, order, torch.arange(m, device=s.device).expand_as(order))
    # Small M (2:4, 4:8): entry i's rank counts the entries j that beat it — larger, or equal and
    # earlier. M² comparisons of contiguous columns are several times faster than a row sort.
    cols = s.t().contiguous()                                        # (M, G)
    rank = torch.zeros((m, g), dtype=torch.uint8, device=s.device)
    for i in range(m):
        for j in range(m):
            if j != i:
                rank[i] += (cols[j] > cols[i]) if j > i else (cols[j] >= cols[i])
    return rank.t()


def _channel_groups(s: torch.Tensor, alive: torch.Tensor, p: float, signed: bool) -> _Groups:
    rows = s.reshape(s.shape[0], -1)     # (filters, weights per filter)
    live = alive.reshape(s.shape[0], -1)
    gain = live.sum(1)
    zero = torch.zeros_like(rows)
    count = gain.clamp_min(1).to(rows.dtype)
    if signed:
        score = torch.where(live, rows, zero).sum(1) / count
    else:
        score = (torch.where(live, rows.abs(), zero).pow(p).sum(1) / count).pow(1.0 / p)
    cost = torch.where(gain > 0, score, torch.full_like(score, float("inf")))

    def apply(convert: torch.Tensor) -> torch.Tensor:
        return (live & ~convert[:, None]).reshape(alive.shape)

    return _Groups(cost, gain, apply)


def _normalise_layer_costs(groups: dict[str, "_Groups"]) -> None:
    """Divide each layer's filter scores by their root mean square (over removable filters).

    Raw filter scores are not comparable across layers: their scale follows each layer's fan-in
    and initialisation, so one global ranking empties whole wide layers. Normalising per layer
    (as Molchanov et al. 2017, arXiv 1611.06440, do for Taylor scores) ranks every filter by how
    weak it is within its own layer.
    """
    for g in groups.values():
        finite = torch.isfinite(g.cost)
        if bool(finite.any()):
            scale = g.cost[finite].abs().pow(2).mean().sqrt()
            if float(scale) > 0:
                g.cost = torch.where(finite, g.cost / scale, g.cost)


def _protect_strongest(g: "_Groups") -> None:
    """Never remove a layer's last filter: a layer with no output channel disconnects the network
    (layer collapse) and accuracy falls to chance, which no pruning target asks for."""
    removable = torch.isfinite(g.cost)
    if bool(removable.any()):
        strongest = torch.where(removable, g.cost, torch.full_like(g.cost, float("-inf"))).argmax()
        g.cost = g.cost.clone()
        g.cost[strongest] = float("inf")


def _convert_cheapest(cost: torch.Tensor, gain: torch.Tensor, needed: int) -> torch.Tensor:
    """Bool (G,): the cheapest groups (ties: lower index) whose removals first reach ``needed``.

    Every group that removes anything removes at least one weight, so at most ``needed`` groups
    are converted: only the groups costing no more than the ``needed``-th cheapest are sorted
    (a per-step pruning increment touches a few groups, not all of them).
    """
    convert = torch.zeros_like(gain, dtype=torch.bool)
    if needed <= 0 or cost.numel() == 0:
        return convert
    bound = torch.topk(cost, min(needed, cost.numel()), largest=False, sorted=False).values.max()
    candidates = torch.nonzero(cost <= bound).flatten()          # ascending index
    order = candidates[torch.sort(cost[candidates], stable=True).indices]
    reached = torch.cumsum(gain[order], 0)
    # number of groups = 1 + index of the first cumulative sum >= needed (all if never reached)
    count = int(torch.searchsorted(reached, torch.tensor([needed], device=reached.device,
                                                         dtype=reached.dtype))[0]) + 1
    convert[order[:min(count, order.numel())]] = True
    return convert


def _select_groups(groups: dict[str, _Groups], alive, target: float, scope: str):
    if scope == "layerwise":
        out = {}
        for name, g in groups.items():
            keep = alive[name]
            needed = prune_count(keep.numel(), target) - (keep.numel() - int(keep.sum()))
            out[name] = g.apply(_convert_cheapest(g.cost, g.gain, needed))
        return out
    total = sum(a.numel() for a in alive.values())
    pruned = total - sum(int(a.sum()) for a in alive.values())
    cost = torch.cat([g.cost.to(torch.float64) for g in groups.values()])
    gain = torch.cat([g.gain for g in groups.values()])
    convert = _convert_cheapest(cost, gain, prune_count(total, target) - pruned)
    out, offset = {}, 0
    for name, g in groups.items():
        out[name] = g.apply(convert[offset:offset + g.gain.numel()])
        offset += g.gain.numel()
    return out
