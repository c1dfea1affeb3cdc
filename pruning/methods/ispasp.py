"""i-SpaSP: structured (neuron/channel) pruning by sparse signal recovery (METHODS.md §4).

Wolfe & Kyrillidis, "i-SpaSP: Structured Neural Pruning via Sparse Signal Recovery",
arXiv 2112.04905 (code: github.com/wolfecameron/i-SpaSP). A block is

    X -> H = channel-wise ops(layer1(X)) -> Y = BN(layer2(H))

with C hidden units/channels; i-SpaSP keeps s = floor(keep_ratio · C) of them, CoSaMP-style:

1. on a small pruning set, take the dense hidden representation H and m_c = Σ H[:, c] (summed
   over samples and positions);
2. S = ∅; T times: the residual L = ½‖Y_dense − Y_S‖² (Y_S: the block's output from the
   units in S only, zero while S is empty); importance_c = Σ ∂L/∂H[:, c] (signed, by autograd
   through Y_dense with Y_S held fixed, as the authors' code does); Ω = the 2s most important
   units; S = the s units of Ω ∪ S with the largest m_c;
3. the block keeps the dense weights restricted to S (layer1's rows and everything channel-wise
   after it, layer2's columns); there is no least-squares refit, as in the authors' code.

Note: with keep_ratio ≥ 0.5, Ω (2s units) already holds every unit, so step 2 keeps the s units
with the largest summed activation after one iteration; the residual-driven search matters for
smaller keep ratios (the authors prune MobileNetV2 blocks to 0.3).

Blocks are pruned greedily from input to output, each one's H computed by the already-pruned
network, with an optional brief fine-tune after each block and a final fine-tune.

Which blocks. The model is traced with ``torch.fx``; a block is a pair of weight layers
(``Linear`` or a ``Conv2d`` with groups = 1) joined only by channel-wise operations, each of
whose outputs is used once: BatchNorm, element-wise activations, pooling, dropout, depthwise
convolutions (with their BatchNorm) and a flatten into a ``Linear``. H is the input of layer2
and Y is layer2's output (after its BatchNorm, if one follows). This gives exactly the blocks
of METHODS.md §4: the hidden layers of an MLP, consecutive conv pairs of VGG/small_cnn/LeNet
(conv-BN-ReLU-(pool)-conv-BN, and the last conv into the classifier), the internal channels of
ResNet basic blocks (conv1's output feeds only conv2, while every conv2 output meets a residual
sum and is left alone, so residual widths stay intact) and the expanded channels of MobileNetV2
inverted residuals (expand 1x1 → BN → ReLU6 → depthwise → BN → ReLU6 → project 1x1, with H at
the depthwise output; the stem feeding the first, non-expanding block's depthwise conv is such a
chain too).

Channels are removed physically (the modules' weights are sliced in place), so parameters,
FLOPs and latency really drop; the run's mask is therefore None.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from pruning.config import Bounds, ConfigError, setting
from pruning.methods.base import METHODS, Method, MethodResult
from pruning.results import TraceKind
from pruning.metrics.sparsity import param_counts
from pruning.results import TraceKind
from pruning.training import evaluate, fit, make_optimizer

DESCRIPTION = (
    "i-SpaSP (Wolfe & Kyrillidis, arXiv 2112.04905): structured pruning by sparse signal "
    "recovery. The network is trained dense for pretrain_fraction of the epochs; then, block by "
    "block from input to output, a CoSaMP-like loop picks which hidden units/channels to keep: "
    "on a few batches it measures the residual ½‖Y_dense − Y_S‖² between the block's dense "
    "output and its output from the kept set S, takes the 2s units whose hidden activations the "
    "residual's gradient points to most, merges them with S and keeps the s with the largest "
    "summed activation (s = keep_ratio × units). The kept channels are cut out physically "
    "(MLP hidden layers, conv pairs, ResNet block internals, MobileNetV2 expanded channels), so "
    "parameters and FLOPs really drop; the rest of the epochs fine-tune the smaller network."
)

# Modules and functions that act on each channel separately, so a hidden channel passes through
# them unchanged in meaning (BatchNorm and depthwise convs are channel-wise too, but have
# per-channel weights and are handled separately). A block needs at least one activation: the
# formula is H = act(BN(layer1(X))), and a linear bottleneck (conv-BN-conv, as between two
# MobileNetV2 blocks) is not a hidden layer.
_ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish,
                       nn.Hardtanh, nn.Sigmoid, nn.Tanh)
_PASS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_ACTIVATION_FUNCTIONS = {torch.relu, torch.relu_, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu,
                         F.silu, F.hardswish, F.hardtanh, torch.sigmoid, torch.tanh}
_PASS_FUNCTIONS = {F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                   F.adaptive_max_pool2d}
_ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "tanh"}
_PASS_METHODS = {"contiguous"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Hidden batches are merged up to this many elements (64 MiB of float32) for the iterations.
MERGE_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class IspaspConfig:
    keep_ratio: float = 0.5            # s = floor(keep_ratio · C) units kept per block
    iterations: int = setting(20, help="T, i-SpaSP iterations per block",  # bounded: work
                              bounds=Bounds(1, 1000))
    pruning_batches: int = setting(5, help="batches (of the run's batch size) in the pruning "
                                   "set", bounds=Bounds(1, 1000))
    pretrain_fraction: float = 0.6     # share of the epochs trained dense before pruning
    finetune_fraction: float = 0.4     # share of the epochs fine-tuning the pruned network
    finetune_per_block_steps: int = setting(0, help="optimizer steps after each block (0 = off)",
                                            bounds=Bounds(0, 100_000))

    def __post_init__(self):
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}; e.g. 0.5")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}; e.g. 20")
        if self.pruning_batches < 1:
            raise ValueError(f"pruning_batches must be at least 1, got {self.pruning_batches}")
        if self.finetune_per_block_steps < 0:
            raise ValueError("finetune_per_block_steps must be >= 0 (0 = off), got "
                             f"{self.finetune_per_block_steps}")
        for name in ("pretrain_fraction", "finetune_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.pretrain_fraction + self.finetune_fraction > 1.0 + 1e-9:
            raise ValueError(
                f"pretrain_fraction + finetune_fraction must be at most 1 (they share the run's "
                f"epochs), got {self.pretrain_fraction} + {self.finetune_fraction}")


@dataclass(frozen=True)
class Block:
    """One prunable hidden layer: module names, hidden width C and features per channel."""
    layer1: str                   # produces the hidden channels (its rows are pruned)
    norms: tuple[str, ...]        # BatchNorms on the hidden channels (pruned)
    depthwise: tuple[str, ...]    # depthwise convs on the hidden channels (pruned)
    layer2: str                   # reads H (its input columns are pruned)
    norm2: str | None             # BatchNorm right after layer2: part of Y, not pruned
    channels: int                 # C
    positions: int = 1            # layer2 input features per channel (>1 after a flatten)

    @property
    def name(self) -> str:
        return self.layer1


def _is_weight_layer(module: nn.Module) -> bool:
    """A dense Linear or Conv2d (groups = 1): its rows/columns can be sliced freely."""
    return type(module) is nn.Linear or (type(module) is nn.Conv2d and module.groups == 1)


def _is_depthwise(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.groups > 1
            and module.groups == module.in_channels == module.out_channels)


def _channel_count(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def find_blocks(model: nn.Module, example: torch.Tensor) -> list[Block]:
    """The model's i-SpaSP blocks in data-flow order; ``example`` is one input batch.

    Raises ConfigError when the model cannot be traced by torch.fx.
    """
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python
        raise ConfigError(f"i-SpaSP cannot trace {type(model).__name__} with torch.fx ({exc}); "
                          f"choose another model or method") from None
    was_training = model.training
    model.eval()  # ShapeProp runs the model: keep BatchNorm running stats untouched
    try:
        with torch.no_grad():
            ShapeProp(graph_module).propagate(example)
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    order = {node: i for i, node in enumerate(graph_module.graph.nodes)}
    found = []  # (graph position of layer1, block)
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and _is_weight_layer(modules[node.target]):
            hit = _block_ending_at(node, modules)
            if hit is not None:
                found.append((order[hit[1]], hit[0]))
    # Data-flow order: the graph order of the nodes that produce the hidden channels.
    return [block for _, block in sorted(found, key=lambda item: item[0])]


def _block_ending_at(layer2_node: fx.Node, modules: dict[str, nn.Module]
                     ) -> tuple[Block, fx.Node] | None:
    """Walk back from layer2's input through single-use channel-wise nodes to a weight layer;
    returns the block and layer1's node, or None when layer2's input is not such a chain."""
    if not layer2_node.args or not isinstance(layer2_node.args[0], fx.Node):
        return None
    norms, depthwise = [], []
    positions, activated = 1, False
    node = layer2_node.args[0]
    while True:
        if len(node.users) != 1:
            return None  # H (or a step towards it) is read elsewhere, e.g. by a residual sum
        module = modules[node.target] if node.op == "call_module" else None
        if module is not None and _is_weight_layer(module):
            break
        if module is not None and isinstance(module, _NORMS):
            norms.append(node.target)
        elif module is not None and _is_depthwise(module):
            depthwise.append(node.target)
        elif (isinstance(module, _ACTIVATION_MODULES)
              or node.op == "call_function" and node.target in _ACTIVATION_FUNCTIONS
              or node.op == "call_method" and node.target in _ACTIVATION_METHODS):
            activated = True
        elif (isinstance(module, nn.Flatten)
              or node.op == "call_function" and node.target is torch.flatten
              or node.op == "call_method" and node.target in _FLATTEN_METHODS):
            positions = _flatten_positions(node)
            if positions is None:
                return None
        elif not (isinstance(module, _PASS_MODULES)
                  or node.op == "call_function" and node.target in _PASS_FUNCTIONS
                  or node.op == "call_method" and node.target in _PASS_METHODS):
            return None
        if not node.args or not isinstance(node.args[0], fx.Node):
            return None
        node = node.args[0]
    if not activated:
        return None
    layer1 = modules[node.target]
    channels = _channel_count(layer1)
    for name in norms:
        if modules[name].num_features != channels:
            return None
    for name in depthwise:
        if modules[name].in_channels != channels:
            return None
    layer2 = modules[layer2_node.target]
    in_features = layer2.in_features if isinstance(layer2, nn.Linear) else layer2.in_channels
    if in_features != channels * positions:
        return None
    norm2 = None
    users = list(layer2_node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(modules[users[0].target],
                                                                          _NORMS):
        norm2 = users[0].target
    return Block(node.target, tuple(reversed(norms)), tuple(reversed(depthwise)),
                 layer2_node.target, norm2, channels, positions), node


def _flatten_positions(node: fx.Node) -> int | None:
    """Features per channel of a flatten (N, C, h, w) -> (N, C·h·w); None if it is not one."""
    before, after = _shape(node.args[0]), _shape(node)
    if before is None or after is None or len(after) != 2 or len(before) < 2:
        return None
    if after[0] != before[0] or after[1] != math.prod(before[1:]):
        return None
    return math.prod(before[2:])


# ---------------------------------------------------------------------------------------------
# The i-SpaSP loop on one block


@dataclass
class BlockResult:
    kept: list[int]           # the chosen units, ascending
    residuals: list[float]    # L after each iteration (S of that iteration)
    dense_norm: float         # ‖Y_dense‖, for the relative residual


class _Captured(Exception):
    """Stops the forward pass once layer2's input has been captured (the rest is not needed)."""


@torch.no_grad()
def capture_hidden(model: nn.Module, layer2: nn.Module, inputs: list[torch.Tensor]
                   ) -> list[torch.Tensor]:
    """H, the input of ``layer2``, for each input batch, computed by ``model`` in eval mode."""
    captured: list[torch.Tensor] = []

    def hook(module, args):
        captured.append(args[0].detach().clone())
        raise _Captured()

    was_training = model.training
    model.eval()
    handle = layer2.register_forward_pre_hook(hook)
    try:
        for x in inputs:
            try:
                model(x)
            except _Captured:
                pass
    finally:
        handle.remove()
        model.train(was_training)
    return captured


def merge_batches(batches: list[torch.Tensor], max_elements: int = MERGE_ELEMENTS
                  ) -> list[torch.Tensor]:
    """Concatenate consecutive batches up to ``max_elements`` each: the T iterations then run a
    few large ops instead of many small ones (small ops are dominated by per-op overhead)."""
    merged, pending, size = [], [], 0
    for batch in batches:
        if pending and size + batch.numel() > max_elements:
            merged.append(torch.cat(pending))
            pending, size = [], 0
        pending.append(batch)
        size += batch.numel()
    if pending:
        merged.append(torch.cat(pending) if len(pending) > 1 else pending[0])
    return merged


def _per_channel(t: torch.Tensor, channels: int) -> torch.Tensor:
    """Sum over samples and positions: (N, C, ...) or (N, C·P) -> (C,)."""
    return t.reshape(t.shape[0], channels, -1).sum(dim=(0, 2))


def ispasp_select(hidden: list[torch.Tensor], output_fn, channels: int, keep: int,
                  iterations: int, should_stop=None) -> BlockResult:
    """Run the i-SpaSP iterations on precomputed dense hidden batches.

    ``hidden``: batches of H, each (N, C, ...) or (N, C·P); ``output_fn(H) -> Y`` the block's
    second half (layer2 and its BatchNorm, eval mode). Returns the kept units and the residual
    L = ½‖Y_dense − Y_S‖² (summed over the pruning set) after every iteration.
    """
    device = hidden[0].device
    m = sum(_per_channel(h, channels) for h in hidden)  # (C,) summed dense activations
    # Y_dense and its autograd graph once per batch: every iteration reuses them (only Y_S
    # changes), so an iteration costs one forward (Y_S) and one vector-Jacobian product.
    dense = []
    with torch.enable_grad():
        for h in hidden:
            h_var = h.detach().requires_grad_(True)
            dense.append((h, h_var, output_fn(h_var)))
    selected = torch.zeros(channels, dtype=torch.bool, device=device)
    omega_size = min(2 * keep, channels)
    residuals: list[float] = []
    dense_sq = 0.0
    for t in range(iterations + 1):
        if should_stop is not None:
            should_stop()
        want_grad = t < iterations
        loss, importance = _residual_and_importance(dense, output_fn, channels, selected,
                                                    want_grad)
        if t == 0:
            dense_sq = 2.0 * loss  # S = ∅: Y_S = 0, so L = ½‖Y_dense‖²
        else:
            residuals.append(loss)
        if not want_grad:
            break
        omega = torch.argsort(importance, descending=True, stable=True)[:omega_size]
        merged = selected.clone()
        merged[omega] = True
        candidates = merged.nonzero().flatten()  # ascending
        best = torch.argsort(m[candidates], descending=True, stable=True)[:keep]
        selected = torch.zeros_like(selected)
        selected[candidates[best]] = True
    kept = selected.nonzero().flatten().tolist()
    return BlockResult(kept, residuals, math.sqrt(max(dense_sq, 0.0)))


def _residual_and_importance(dense, output_fn, channels, selected, want_grad):
    """(L, importance (C,)) for the set ``selected``; ``dense``: (H, H leaf, Y_dense) per batch."""
    loss = 0.0
    importance = torch.zeros(channels, device=selected.device)
    any_selected = bool(selected.any())
    for h, h_var, y_dense in dense:
        # mask over H's feature dim: (1, C, 1, 1) for conv maps, (1, C·P) after a flatten
        if h.dim() == 2:
            mask = selected.repeat_interleave(h.shape[1] // channels).to(h.dtype).unsqueeze(0)
        else:
            mask = selected.to(h.dtype).view(1, channels, *([1] * (h.dim() - 2)))
        with torch.no_grad():
            y_s = output_fn(h * mask) if any_selected else torch.zeros_like(y_dense)
            residual = y_dense.detach() - y_s
        loss += 0.5 * float(residual.pow(2).sum())
        if want_grad:
            # ∂L/∂H with Y_S fixed: the vector-Jacobian product of Y_dense with the residual
            (grad,) = torch.autograd.grad(y_dense, h_var, grad_outputs=residual,
                                          retain_graph=True)
            importance += _per_channel(grad, channels)
    return loss, importance


# ---------------------------------------------------------------------------------------------
# Physical surgery


def _slice_param(module: nn.Module, name: str, index: torch.Tensor, dim: int) -> None:
    old = getattr(module, name)
    if old is None:
        return
    new = old.detach().index_select(dim, index).clone()
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        setattr(module, name, new)


@torch.no_grad()
def prune_block(model: nn.Module, block: Block, kept: list[int]) -> None:
    """Keep only the ``kept`` hidden channels of ``block`` (``model``'s modules sliced in place)."""
    modules = dict(model.named_modules())
    layer1 = modules[block.layer1]
    device = layer1.weight.device
    index = torch.tensor(sorted(kept), dtype=torch.long, device=device)
    s = index.numel()
    _slice_param(layer1, "weight", index, 0)
    _slice_param(layer1, "bias", index, 0)
    if isinstance(layer1, nn.Linear):
        layer1.out_features = s
    else:
        layer1.out_channels = s
    for name in block.norms:
        norm = modules[name]
        for attr in ("weight", "bias", "running_mean", "running_var"):
            _slice_param(norm, attr, index, 0)
        norm.num_features = s
    for name in block.depthwise:
        conv = modules[name]
        _slice_param(conv, "weight", index, 0)  # (C, 1, k, k): one kernel per channel
        _slice_param(conv, "bias", index, 0)
        conv.in_channels = conv.out_channels = conv.groups = s
    layer2 = modules[block.layer2]
    # After a flatten, channel c owns features c·P .. c·P + P − 1 (channel-major NCHW order).
    positions = torch.arange(block.positions, device=device)
    columns = (index.unsqueeze(1) * block.positions + positions).flatten()
    _slice_param(layer2, "weight", columns, 1)
    if isinstance(layer2, nn.Linear):
        layer2.in_features = columns.numel()
    else:
        layer2.in_channels = s


def _output_fn(model: nn.Module, block: Block):
    modules = dict(model.named_modules())
    layer2 = modules[block.layer2]
    norm2 = modules[block.norm2] if block.norm2 is not None else None

    def output(h: torch.Tensor) -> torch.Tensor:
        y = layer2(h)  # (N, C_out, ...) or (N, features_out)
        return norm2(y) if norm2 is not None else y

    return output


# ---------------------------------------------------------------------------------------------
# The registered method


def _split_epochs(epochs: int, cfg: IspaspConfig) -> tuple[int, int]:
    pretrain = int(math.floor(cfg.pretrain_fraction * epochs + 0.5))
    finetune = min(epochs - pretrain, int(math.floor(cfg.finetune_fraction * epochs + 0.5)))
    return pretrain, max(finetune, 0)


ISPASP_RESIDUAL = TraceKind("ispasp_residual", {
    "block": str, "iteration": int, "residual": float, "relative": float},
    "one CoSaMP iteration of one block: ½‖Y_dense − Y_S‖² and its norm relative to ‖Y_dense‖")
ISPASP_UNITS = TraceKind("ispasp_units", {
    "block": str, "layer2": str, "channels": int, "kept": int, "chosen": list[int],
    "params_after": int},
    "one pruned block: the hidden units it had, those kept, and the model's parameters after")


@dataclass(frozen=True)
class IspaspExtras:
    """i-SpaSP's own results (the run summary's ``extras``)."""
    acc_dense: float             # test accuracy after pre-training
    acc_pruned: float            # right after pruning, before fine-tuning
    acc_finetuned: float         # after fine-tuning
    blocks: int
    channels_dense: int          # hidden units/channels of all blocks before pruning
    channels_kept: int
    prune_time_s: float
    pretrain_epochs: int
    finetune_epochs: int


@METHODS.register("ispasp", config=IspaspConfig, description=DESCRIPTION)
class Ispasp(Method):
    extras = IspaspExtras
    traces = (ISPASP_RESIDUAL, ISPASP_UNITS)
    description = DESCRIPTION
    changes_architecture = True

    def run(self, model: nn.Module, ctx) -> MethodResult:
        cfg: IspaspConfig = self.method_config or IspaspConfig()
        config, data, device = ctx.config, ctx.data, ctx.device
        pretrain, finetune = _split_epochs(config.epochs, cfg)
        ctx.total_epochs = pretrain + finetune
        model.to(device)
        blocks = find_blocks(model, data.train_x[:2].to(device))
        if not blocks:
            raise ConfigError(f"i-SpaSP found no prunable block in model {config.model!r}; "
                              f"choose a model with hidden layers between two weight layers")
        if pretrain:
            acc_dense = fit(model, ctx, epochs=pretrain, phase="pretrain").last["test_acc"]
        else:
            acc_dense = evaluate(model, data, device)[1]
        started = time.perf_counter()
        pruned = self.prune(model, ctx, blocks)
        prune_time = time.perf_counter() - started
        acc_pruned = evaluate(model, data, device)[1]
        acc_finetuned = acc_pruned
        if finetune:
            acc_finetuned = fit(model, ctx, epochs=finetune, phase="finetune").last["test_acc"]
        # parameters and FLOPs before and after are the run summary's own (params_compact ...)
        summary: dict[str, Any] = {
            "acc_dense": acc_dense, "acc_pruned": acc_pruned, "acc_finetuned": acc_finetuned,
            "blocks": len(blocks),
            "channels_dense": sum(b.channels for b in blocks),
            "channels_kept": sum(len(k) for k in pruned),
            "prune_time_s": prune_time,
            "pretrain_epochs": pretrain, "finetune_epochs": finetune,
        }
        return MethodResult(model, None, summary)

    def prune(self, model: nn.Module, ctx, blocks: list[Block]) -> list[list[int]]:
        """Prune every block in order; returns the kept units of each. Records the traces."""
        cfg: IspaspConfig = self.method_config or IspaspConfig()
        config, device = ctx.config, ctx.device
        n = cfg.pruning_batches * config.batch_size
        x, _ = ctx.data.subset("train", n)  # a fixed pruning set (the stored order is shuffled)
        inputs = [t.to(device) for t in x.split(config.batch_size)]
        kept_all = []
        for i, block in enumerate(blocks):
            ctx.check_stop()
            modules = dict(model.named_modules())
            hidden = merge_batches(capture_hidden(model, modules[block.layer2], inputs))
            keep = max(1, int(math.floor(cfg.keep_ratio * block.channels)))
            result = ispasp_select(hidden, _output_fn(model, block), block.channels, keep,
                                   cfg.iterations, should_stop=ctx.check_stop)
            del hidden
            prune_block(model, block, result.kept)
            for it, residual in enumerate(result.residuals, start=1):
                ctx.recorder.trace(ISPASP_RESIDUAL.name, ctx.steps_done, {
                    "block": block.name, "iteration": it, "residual": residual,
                    "relative": math.sqrt(2.0 * residual) / max(result.dense_norm, 1e-12)})
            ctx.recorder.trace(ISPASP_UNITS.name, ctx.steps_done, {
                "block": block.name, "layer2": block.layer2, "channels": block.channels,
                "kept": len(result.kept), "chosen": result.kept,
                "params_after": param_counts(model, None)["params"]})
            ctx.emit("prune", i + 1, len(blocks), block=block.name,
                     residual=result.residuals[-1], kept=len(result.kept))
            if cfg.finetune_per_block_steps:
                _brief_finetune(model, ctx, cfg.finetune_per_block_steps, salt=10_000 + i)
            kept_all.append(result.kept)
        return kept_all


def _brief_finetune(model: nn.Module, ctx, steps: int, salt: int) -> None:
    """A few optimizer steps on the whole (partly pruned) network after one block.

    Deliberately not ``fit``: these are a handful of steps, not epochs, and recording them as
    epochs would misstate the run's epoch count. The steps count towards ``ctx.steps_done``.
    """
    config, data, device = ctx.config, ctx.data, ctx.device
    model.train()
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    generator = ctx.generator(salt=salt)
    done = 0
    while done < steps:
        for x, y in data.batches("train", config.batch_size, shuffle=True, generator=generator):
            ctx.check_stop()
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)  # (B, classes) logits vs (B,) labels
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ctx.steps_done += 1
            done += 1
            if done >= steps:
                break
