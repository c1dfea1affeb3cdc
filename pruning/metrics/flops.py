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

Speed: ``FlopCounterMode`` imports ``torch._dynamo`` on first use (1.5–3 s once per process,
most of a small run's set-up). Models built only from layers whose counts are known in closed
form (Conv1d/2d/3d and Linear: the counter's own formulas, 2 × batch × out elements × the
multiplications per output; normalisation, activations, pooling, dropout, reshapes: 0) inside
containers from torch, torchvision or ``pruning.models`` are counted by forward hooks on those
layers instead, giving the same numbers (``tests/test_metrics.py`` checks equality on every
registered model); anything else (a layer with ``needed_flops``, an unknown layer or container
whose forward might multiply matrices itself) goes through ``FlopCounterMode``.
"""
from __future__ import annotations

import torch
from torch import nn

from pruning.masks import PRUNABLE_TYPES, Mask

# Layers counted in closed form (exact types: a subclass may override forward).
_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Layers whose forward dispatches no matrix multiplication or convolution: FlopCounterMode
# counts 0 for them.
_NO_FLOPS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm,
             nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
             nn.Hardswish, nn.Hardsigmoid, nn.Softmax, nn.LogSoftmax, nn.MaxPool1d,
             nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
             nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Flatten,
             nn.Identity)
# Containers whose forward only calls their children and element-wise/shape functions.
_KNOWN_CONTAINER_PACKAGES = ("torch.nn.", "torchvision.", "pruning.models.")


def _example(model: nn.Module, input_shape: tuple) -> torch.Tensor:
    """A zeros batch of one on the model's device and dtype (FLOPs do not depend on values)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros((1, *input_shape), device=device, dtype=dtype)


def hooks_suffice(model: nn.Module) -> bool:
    """True when every FLOP of ``model``'s forward is in a ``_COUNTED`` layer (see above)."""
    for module in model.modules():
        kind = type(module)
        if callable(getattr(module, "needed_flops", None)):
            return False
        if kind in _COUNTED or kind in _NO_FLOPS:
            continue
        if next(module.children(), None) is None:  # an unknown leaf layer
            return False
        if not (kind.__module__ + ".").startswith(_KNOWN_CONTAINER_PACKAGES):
            return False
    return True


def _layer_flops(module: nn.Module, args: tuple, output: torch.Tensor) -> int:
    """FlopCounterMode's figure for one Conv/Linear call: 2 × multiply-adds (bias uncounted)."""
    weight = module.weight
    if isinstance(module, nn.Linear):
        # (..., in) @ (in, out): every output element needs ``in`` multiply-adds
        return 2 * output.numel() * weight.shape[1]
    # conv: (B, c_out, *spatial_out); each output element needs (c_in / groups) × kernel MACs
    return 2 * output.numel() * weight[0].numel()


def _count_by_hooks(model: nn.Module, input_shape: tuple) -> tuple[int, dict[str, int]]:
    """(total, per-layer FLOPs) from forward hooks on the Conv/Linear layers only."""
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if type(module) not in _COUNTED:
            continue
        key = f"{name}.weight" if name else "weight"

        def count(mod, args, output, key=key):
            counts[key] = counts.get(key, 0) + _layer_flops(mod, args, output)

        handles.append(module.register_forward_hook(count))
    _forward_once(model, input_shape, handles)
    return sum(counts.values()), counts


def _forward_once(model: nn.Module, input_shape: tuple, handles: list) -> None:
    """One eval-mode forward pass on a single sample with ``handles``' hooks in place; the hooks
    are removed and the model's training mode restored whatever happens."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(_example(model, input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _count(model: nn.Module, input_shape: tuple, layers: bool) -> tuple[int, dict[str, int]]:
    """(total, per-layer FLOPs) of one forward pass on a single sample: by hooks where they
    suffice, else under FlopCounterMode.
    """
    if hooks_suffice(model):
        total, counts = _count_by_hooks(model, input_shape)
        return total, counts if layers else {}
    return count_with_counter_mode(model, input_shape, layers)


def count_with_counter_mode(model: nn.Module, input_shape: tuple,
                            layers: bool = True) -> tuple[int, dict[str, int]]:
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
    # Imported here: the first use imports torch._dynamo (seconds), which the hooks path avoids.
    from torch.utils.flop_counter import FlopCounterMode

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
        _forward_once(model, input_shape, handles)
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
