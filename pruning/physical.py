"""Physical removal of pruned channels: a smaller dense model with the masked model's outputs.

A mask only zeroes weights; the layers keep their shapes and do every multiplication. When a
whole output channel (a conv filter, a linear neuron) is zero, the channel can be cut out of the
network together with everything coupled to it: its BatchNorm entries, the matching input
channels of the layers that read it, and — across residual additions, concatenations and
depthwise convolutions — the same channel in every other layer tied to it. Torch-Pruning's
DependencyGraph (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023,
arXiv 2301.12900) finds these coupled groups; this module decides which groups may go.

Exactness. A zero filter does not make a zero channel: a conv bias, or the BatchNorm after it
(``beta - gamma * mean / sqrt(var + eps)``), turns it into a constant, and ReLU keeps a positive
constant. Deleting the channel would drop that constant's contribution to the next layer, which
is what pruning libraries usually accept and fine-tune away. Here the compact model must give the
masked model's outputs (to float rounding), so the constant is *folded* into the layers that
read the channel:

- into the consumer's bias when its contribution is the same at every position (always for a
  Linear; for a convolution without zero padding);
- otherwise (a 3x3 convolution with zero padding sees the constant only partly at the borders)
  into a per-position bias map, a buffer of shape (C_out, H_out, W_out) added after the conv
  (``BiasMapConv2d``). Such a model is exact for inputs of the example's spatial size only, which
  is the one size every registered model is trained on.

A group of channels is removed only when (a) every non-depthwise layer producing them has an
all-zero filter there, and (b) every layer reading them sees a value that does not depend on the
input (checked on a random probe batch; with (a) this holds by construction). The result is
verified against the masked model on that probe before it is returned.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from pruning.masks import Mask

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYERS = _CONV + (nn.Linear,)
PROBE_BATCH = 4
OUTPUT_TOLERANCE = 1e-5


class BiasMapConv1d(nn.Conv1d):
    """A Conv1d plus a fixed per-position bias (``bias_map``: (C_out, L_out))."""

    def forward(self, x):
        return super().forward(x) + self.bias_map


class BiasMapConv2d(nn.Conv2d):
    """A Conv2d plus a fixed per-position bias (``bias_map``: (C_out, H_out, W_out)).

    It carries the contribution of removed constant input channels, which with zero padding is
    smaller at the borders than in the interior and so cannot live in the ordinary bias.
    """

    def forward(self, x):
        return super().forward(x) + self.bias_map  # (B, C_out, H, W) + (C_out, H, W)


class BiasMapConv3d(nn.Conv3d):
    """A Conv3d plus a fixed per-position bias (``bias_map``: (C_out, D_out, H_out, W_out))."""

    def forward(self, x):
        return super().forward(x) + self.bias_map


_BIAS_MAP_CLASS = {nn.Conv1d: BiasMapConv1d, nn.Conv2d: BiasMapConv2d, nn.Conv3d: BiasMapConv3d}
_FOLDABLE = (nn.Linear, *_BIAS_MAP_CLASS, *_BIAS_MAP_CLASS.values())


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, _CONV) and module.groups > 1 and module.groups == module.in_channels


def _probe(model: nn.Module, probe: torch.Tensor
           ) -> tuple[torch.Tensor, dict[nn.Module, torch.Tensor], set[nn.Module]]:
    """One forward pass on the probe batch: (output, each Conv/Linear layer's input, the layers
    whose output is the model's output, whose channels are the classes and must all stay)."""
    inputs: dict[nn.Module, torch.Tensor] = {}
    produced: list[tuple[torch.Tensor, nn.Module]] = []

    def keep_input(module, args):
        inputs.setdefault(module, args[0].detach())

    def keep_output(module, args, out):
        produced.append((out, module))

    layers = [m for m in model.modules() if isinstance(m, _LAYERS)]
    handles = [m.register_forward_pre_hook(keep_input) for m in layers]
    handles += [m.register_forward_hook(keep_output) for m in layers]
    try:
        with torch.no_grad():
            out = model(probe)
    finally:
        for h in handles:
            h.remove()
    outputs = out if isinstance(out, (tuple, list)) else [out]
    found = {mod for tensor, mod in produced if any(tensor is o for o in outputs)}
    # The last layer in registration order is the classifier in every registered model; keep it
    # even when an op after it (a reshape) hides it from the identity check above.
    return out, inputs, found | set(layers[-1:])


def _drop_inputs(group, inputs: dict[nn.Module, torch.Tensor]) -> None:
    """After pruning ``group``, the captured inputs of the layers reading it lose those channels.

    Every other value is unchanged (removal is exact), so this replaces a new probe pass.
    """
    dropped: dict[nn.Module, set[int]] = {}
    for item in group:
        module, handler = item.dep.target.module, item.dep.handler
        if not isinstance(module, _LAYERS) or module not in inputs:
            continue
        if not group._DG.is_out_channel_pruning_fn(handler) or _is_depthwise(module):
            dropped.setdefault(module, set()).update(item.idxs)
    for module, idxs in dropped.items():
        x = inputs[module]
        dim = x.dim() - 1 if isinstance(module, nn.Linear) else 1
        keep = [i for i in range(x.shape[dim]) if i not in idxs]
        inputs[module] = x.index_select(dim, torch.as_tensor(keep, device=x.device))


def _same_for_every_sample(x: torch.Tensor, channel_dim: int, idxs: list[int]) -> torch.Tensor:
    """Bool per index: does channel/feature ``idx`` hold the same values for every sample?"""
    picked = x.index_select(channel_dim, torch.as_tensor(idxs, device=x.device))
    first = picked[:1]
    scale = 1.0 + first.abs().amax() if first.numel() else 1.0
    diff = (picked - first).abs()
    dims = [d for d in range(diff.dim()) if d != channel_dim]
    return (diff.amax(dim=dims) if dims else diff) <= 1e-6 * scale


def _zero_rows(weight: torch.Tensor, idxs: list[int]) -> torch.Tensor:
    """Bool per index: is output channel ``idx`` of ``weight`` all zero?"""
    rows = weight.detach()[torch.as_tensor(idxs, device=weight.device)]
    return (rows.reshape(len(idxs), -1) == 0).all(dim=1)


def _classify(group) -> tuple[list, list, set]:
    """Split a group into producers, terminal consumers (with idxs) and pass-through layers."""
    producers, consumers = [], []
    outs = set()
    for item in group:
        module, handler = item.dep.target.module, item.dep.handler
        if isinstance(module, _LAYERS) and group._DG.is_out_channel_pruning_fn(handler):
            outs.add(module)
    for item in group:
        module, handler = item.dep.target.module, item.dep.handler
        if not isinstance(module, _LAYERS):
            continue
        if group._DG.is_out_channel_pruning_fn(handler):
            if not _is_depthwise(module):
                producers.append(item)
        elif module not in outs:
            consumers.append(item)
    return producers, consumers, outs


def _removable(group, inputs: dict[nn.Module, torch.Tensor]) -> set[int]:
    """Root indices of ``group`` that fail (a) zero producers or (b) input-independent readers."""
    producers, consumers, _ = _classify(group)
    bad: set[int] = set()
    for item in producers:
        ok = _zero_rows(item.dep.target.module.weight, list(item.idxs))
        bad.update(r for r, good in zip(item.root_idxs, ok.tolist()) if not good)
    for item in consumers:
        module = item.dep.target.module
        x = inputs.get(module)
        if x is None:  # never called on the probe: its reading cannot be checked
            bad.update(item.root_idxs)
            continue
        channel_dim = x.dim() - 1 if isinstance(module, nn.Linear) else 1
        ok = _same_for_every_sample(x, channel_dim, list(item.idxs))
        bad.update(r for r, good in zip(item.root_idxs, ok.tolist()) if not good)
        if isinstance(module, nn.Linear) and x.dim() > 2:
            bad.update(item.root_idxs)  # position-dependent constants in a Linear: not folded
        elif type(module) not in _FOLDABLE:
            # A Conv subclass we cannot give a bias map: only all-zero inputs need no folding.
            zero = (x.index_select(1, torch.as_tensor(list(item.idxs), device=x.device)) == 0)
            ok = zero.reshape(zero.shape[0], zero.shape[1], -1).all(dim=2).all(dim=0)
            bad.update(r for r, good in zip(item.root_idxs, ok.tolist()) if not good)
    return bad


@torch.no_grad()
def _fold(item, inputs: dict[nn.Module, torch.Tensor]) -> None:
    """Add the removed channels' constant contribution to the consumer's bias or bias map."""
    module, idxs = item.dep.target.module, list(item.idxs)
    x = inputs[module]
    index = torch.as_tensor(idxs, device=x.device)
    if isinstance(module, nn.Linear):
        kept = torch.zeros_like(x[:1])
        kept[..., index] = x[:1][..., index]
        contribution = F.linear(kept, module.weight)[0]  # (out,)
        if not bool(contribution.any()):
            return
        _add_bias(module, contribution)
        return
    kept = torch.zeros_like(x[:1])
    kept[:, index] = x[:1][:, index]
    contribution = module._conv_forward(kept, module.weight, None)[0]  # (C_out, *spatial)
    if not bool(contribution.any()):
        return
    flat = contribution.reshape(contribution.shape[0], -1)
    uniform = (flat - flat[:, :1]).abs().amax() <= 1e-7 * (1.0 + flat.abs().amax())
    if uniform and not isinstance(module, tuple(_BIAS_MAP_CLASS.values())):
        _add_bias(module, flat.mean(dim=1))
        return
    if not isinstance(module, tuple(_BIAS_MAP_CLASS.values())):
        module.__class__ = _BIAS_MAP_CLASS[type(module)]
        module.register_buffer("bias_map", torch.zeros_like(contribution))
    module.bias_map += contribution


def _add_bias(module: nn.Module, value: torch.Tensor) -> None:
    if module.bias is None:
        module.bias = nn.Parameter(torch.zeros_like(value))
    module.bias.data += value


def _prune_bias_maps(group) -> None:
    """Torch-Pruning cuts weight and bias; cut the matching rows of our bias maps too."""
    for item in group:
        module = item.dep.target.module
        if hasattr(module, "bias_map") and group._DG.is_out_channel_pruning_fn(item.dep.handler):
            keep = [i for i in range(module.bias_map.shape[0]) if i not in set(item.idxs)]
            module.bias_map = module.bias_map[keep].clone()


def compact_model(model: nn.Module, mask: Mask | None, example_input: torch.Tensor) -> nn.Module:
    """A deep copy of ``model`` with every removable zero channel physically removed.

    ``mask`` (or, when None, the model's zero weights) says which weights are zero; whole zero
    output channels of Conv/Linear layers are removed with everything coupled to them, folding
    their constant contribution into the next layers so that the compact model's outputs equal
    the masked model's (in eval mode). Layers producing the model's output keep all channels.
    The result is a plain ``nn.Module`` in eval mode; save it whole with ``torch.save(model)``.
    """
    compact = copy.deepcopy(model).eval()
    if mask is not None:
        mask.apply(compact)
    example_input = example_input.detach()
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn((max(PROBE_BATCH, example_input.shape[0]), *example_input.shape[1:]),
                        generator=generator).to(device=example_input.device,
                                                dtype=example_input.dtype)
    reference, inputs, skip = _probe(compact, probe)
    graph = None  # built on the first candidate: a model without zero channels needs none
    for module in [m for m in compact.modules() if isinstance(m, _LAYERS)]:
        if module in skip or _is_depthwise(module) or module.weight.shape[0] <= 1:
            continue
        zero = (module.weight.detach().reshape(module.weight.shape[0], -1) == 0).all(dim=1)
        candidates = torch.nonzero(zero).flatten().tolist()
        if not candidates:
            continue
        prune_fn = (tp.prune_linear_out_channels if isinstance(module, nn.Linear)
                    else tp.prune_conv_out_channels)
        if graph is None:
            graph = tp.DependencyGraph().build_dependency(compact, example_inputs=example_input)
        group = graph.get_pruning_group(module, prune_fn, idxs=candidates)
        bad = _removable(group, inputs)
        chosen = [i for i in candidates if i not in bad]
        # Keep at least one channel in the root (and so in every layer of the group).
        if len(chosen) >= module.weight.shape[0]:
            chosen = chosen[1:]
        if not chosen:
            continue
        group = graph.get_pruning_group(module, prune_fn, idxs=chosen)
        _, consumers, _ = _classify(group)
        for item in consumers:
            _fold(item, inputs)
        _prune_bias_maps(group)
        _drop_inputs(group, inputs)
        group.prune()
    with torch.no_grad():
        result = compact(probe)
    error = float((result - reference).abs().max()) if result.shape == reference.shape else None
    scale = 1.0 + float(reference.abs().max())
    if error is None or error > OUTPUT_TOLERANCE * scale:
        raise RuntimeError(f"physical removal changed the outputs (max error {error}); "
                           "the model has a coupling the dependency graph does not cover")
    return compact
