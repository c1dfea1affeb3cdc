"""FLOPs of a model, dense and under a mask (METHODS.md §7).

Dense FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the matrix
multiplications and convolutions actually dispatched (2 FLOPs per multiply-accumulate; element-wise
ops, pooling and normalisation are not counted, as in most pruning papers' tables). A layer
that knows the multiply-adds it really needs (``needed_flops``) is counted by that instead.

Effective FLOPs under a mask are counted from the nonzeros: an unstructured-sparse layer whose
kernel could skip zeros does ``dense FLOPs × density`` work, so each Conv/Linear layer's dense
FLOPs are scaled by the fraction of its weights that are kept (by the mask where it covers the
layer, by the nonzero weights otherwise); everything else is counted as dense. This is the
"theoretical" figure that papers report; what a real kernel achieves is measured in
``pruning.speedlab``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pruning.masks import PRUNABLE_TYPES, Mask


def _example(model: nn.Module, input_shape: tuple) -> torch.Tensor:
    """A zeros batch of one on the model's device and dtype (FLOPs do not depend on values)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros((1, *input_shape), device=device, dtype=dtype)


def _count(model: nn.Module, input_shape: tuple, layers: bool) -> tuple[int, dict[str, int]]:
    """One forward pass on a single sample under FlopCounterMode: (total, per-layer FLOPs).

    Each layer's share is the growth of the counter's running total across that layer's call,
    so the per-layer figures use exactly the counter's own formulas. A module that defines
    ``needed_flops(output) -> int`` (a layer whose fast form dispatches some multiplications by
    stored zeros, such as SSC's fused 1×1 part) counts that figure instead of what the counter
    saw inside it.
    """
    counts: dict[str, int] = {}
    inside: dict[nn.Module, int] = {}
    needed: dict[nn.Module, int] = {}
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        handles = []
        for name, module in model.named_modules():
            own = callable(getattr(module, "needed_flops", None))
            if own:
                def enter(mod, args):
                    inside[mod] = inside.get(mod, 0) - counter.get_total_flops()

                def leave(mod, args, output):
                    inside[mod] += counter.get_total_flops()
                    needed[mod] = needed.get(mod, 0) + int(mod.needed_flops(output))

                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave))
            if not layers or not isinstance(module, PRUNABLE_TYPES):
                continue
            key = f"{name}.weight" if name else "weight"

            def before(mod, args, key=key):
                counts[key] = counts.get(key, 0) - counter.get_total_flops()

            def after(mod, args, output, key=key):
                counts[key] += counter.get_total_flops()

            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(after))
        try:
            with torch.no_grad():
                model(_example(model, input_shape))
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
    total = counter.get_total_flops() - sum(inside.values()) + sum(needed.values())
    return int(total), {k: int(v) for k, v in counts.items()}


def layer_flops(model: nn.Module, input_shape: tuple) -> tuple[int, dict[str, int]]:
    """(total FLOPs, {weight name: FLOPs of that Conv/Linear layer}) for one sample."""
    return _count(model, input_shape, layers=True)


def count_flops(model: nn.Module, input_shape: tuple) -> int:
    """Dense FLOPs of one forward pass on a single sample of ``input_shape`` (C, H, W) or (F,)."""
    return _count(model, input_shape, layers=False)[0]


def layer_density(model: nn.Module, mask: Mask | None) -> dict[str, float]:
    """{weight name: fraction of weights kept} for every Conv/Linear layer of ``model``."""
    params = dict(model.named_parameters())
    density = {}
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES) or getattr(module, "weight", None) is None:
            continue
        key = f"{name}.weight" if name else "weight"
        if mask is not None and key in mask:
            keep = mask[key]
        else:
            keep = params[key].detach() != 0
        density[key] = float(keep.sum()) / max(keep.numel(), 1)
    return density


def masked_flops(model: nn.Module, mask: Mask | None, input_shape: tuple) -> int:
    """Effective FLOPs under ``mask``: each Conv/Linear layer's FLOPs × its kept fraction.

    With ``mask=None`` the kept fraction is read from the nonzero weights, so a model whose
    pruned weights were zeroed in place gives the same figure as the model plus its mask.
    """
    total, per_layer = layer_flops(model, input_shape)
    density = layer_density(model, mask)
    saved = sum(flops * (1.0 - density.get(key, 1.0)) for key, flops in per_layer.items())
    return int(round(total - saved))
