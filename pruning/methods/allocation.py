"""Per-layer pruning-ratio allocations, to compare a method's choice against simple baselines.

ASWL (He, Shi, Dong, arXiv 2111.02399) learns one pruning ratio per layer. To show what it chose,
the app draws its final ratios next to two allocations at the same overall sparsity:

* uniform: every layer pruned at the overall sparsity;
* global magnitude (Han et al. 2015 with one threshold over all layers): the ratios that pruning
  the smallest-magnitude weights of the whole network would give each layer.

Both return one ratio (fraction of the layer's weights pruned) per layer, in the given order.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def uniform_allocation(sizes: Sequence[int], sparsity: float) -> list[float]:
    """Every layer pruned at ``sparsity``; ``sizes`` only fixes how many layers there are."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return [float(sparsity) for _ in sizes]


@torch.no_grad()
def global_magnitude_allocation(model: nn.Module, names: Sequence[str],
                                sparsity: float) -> list[float]:
    """Per-layer ratios of one global magnitude threshold that prunes ``sparsity`` of ``names``.

    Exactly ``round(sparsity * total)`` weights are counted as pruned (the smallest |w|, ties
    broken by position), so the ratios weighted by layer size give the requested sparsity.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    params = dict(model.named_parameters())
    weights = [params[name].detach().abs().flatten().float().cpu() for name in names]
    sizes = [w.numel() for w in weights]
    scores = torch.cat(weights)  # (total,)
    layer_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))  # (total,)
    k = int(round(sparsity * scores.numel()))
    if k == 0:
        return [0.0 for _ in sizes]
    # A stable sort makes the choice among equal magnitudes deterministic.
    order = torch.sort(scores, stable=True).indices[:k]
    pruned = torch.bincount(layer_of[order], minlength=len(sizes))
    return [int(p) / n for p, n in zip(pruned.tolist(), sizes)]
