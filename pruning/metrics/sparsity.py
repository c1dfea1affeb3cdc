"""Parameter counts and the three sparsities a run reports (METHODS.md §7).

- target sparsity: what was asked for (the schedule's final value);
- mask sparsity: the fraction of prunable weights the mask sets to zero;
- effective sparsity: the fraction of *all* parameters that are really gone after physical
  removal (``pruning.physical.compact_model``), ``1 - compact_params / dense_params``. Unstructured
  masks remove almost nothing physically, channel masks remove whole filters and the inputs of the
  layers after them, so effective can be far below or even above the mask figure.
"""
from __future__ import annotations

from torch import nn

from pruning.masks import Mask, prunable_parameters


def param_counts(model: nn.Module, mask: Mask | None) -> dict[str, int]:
    """Parameter counts of ``model``: all, nonzero, prunable and prunable nonzero.

    A weight counts as nonzero when it is nonzero in the model and kept by ``mask`` (where the
    mask covers it). Prunable parameters are the mask's parameters, or with ``mask=None`` the
    default prunable set (Conv/Linear weights without the first and last layer).
    """
    params = dict(model.named_parameters())
    prunable = list(mask) if mask is not None else list(prunable_parameters(model))
    total = nonzero = 0
    for name, param in params.items():
        alive = param.detach() != 0
        if mask is not None and name in mask:
            alive = alive & mask[name].to(alive.device)
        total += param.numel()
        nonzero += int(alive.sum())
    prunable_total = prunable_nonzero = 0
    for name in prunable:
        alive = params[name].detach() != 0
        if mask is not None:
            alive = alive & mask[name].to(alive.device)
        prunable_total += alive.numel()
        prunable_nonzero += int(alive.sum())
    return {"params": total, "params_nonzero": nonzero,
            "prunable_params": prunable_total, "prunable_nonzero": prunable_nonzero}


def sparsity_report(target: float | None, mask: Mask | float | None, dense_params: int,
                    compact_params: int) -> dict[str, float]:
    """The three sparsities side by side; ``mask`` may be a Mask, its sparsity, or None (dense)."""
    if mask is None:
        mask_sparsity = 0.0
    elif isinstance(mask, Mask):
        mask_sparsity = mask.sparsity()
    else:
        mask_sparsity = float(mask)
    effective = 1.0 - compact_params / dense_params if dense_params else 0.0
    return {"target_sparsity": float(target or 0.0), "mask_sparsity": float(mask_sparsity),
            "effective_sparsity": float(effective)}
