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

The default keep_ratio is 0.3, the authors' MobileNetV2 setting: with keep_ratio ≥ 0.5, Ω
(2s units) would already hold every unit and step 2 would reduce to "the s units with the
largest summed activation", so the residual could not change after the first iteration.
Because each iteration's support is thresholded by m_c rather than by its residual, L(S_t) can
rise; the block keeps the best support found so far (the residual recorded per iteration is
that support's, so it never rises). On trained networks the search typically settles within a
few iterations: blocks where the first support is already the fixed point show a flat line.

Selection runs with the whole network in eval mode: layer2's BatchNorm normalises Y with its
running statistics (as the pruned network will at test time) and no running statistic moves.

Blocks are pruned greedily from input to output, each one's H computed by the already-pruned
network, with an optional brief fine-tune after each block and a final fine-tune.

Which blocks. A block is a pair of dense weight layers (``Linear`` or a ``Conv2d`` with
groups = 1) coupled only through channel-wise operations, read off Torch-Pruning's dependency
graph (Fang et al., "DepGraph", CVPR 2023, arXiv 2301.12900, as ``pruning/physical.py`` uses
it): the group of everything tied to layer1's output channels may hold BatchNorms, depthwise
convolutions, element-wise operations (at least one: the activation) and flattens, no other
producer of the channels and exactly one layer reading them, layer2. H is layer2's input and Y
its output (after its BatchNorm, if one follows). This gives the blocks of METHODS.md §4: the
hidden layers of an MLP, consecutive conv pairs of VGG/small_cnn/LeNet (and the last conv into
the classifier), the internal channels of ResNet basic blocks (every conv2 output meets a
residual sum, so its group has other producers and residual widths stay intact) and the
expanded channels of MobileNetV2 inverted residuals (H at the depthwise output); a linear
bottleneck (conv-BN-conv, no activation) is not a hidden layer.

Channels are removed physically by pruning that dependency group (the modules' weights,
BatchNorm statistics and depthwise kernels are cut together), so parameters, FLOPs and latency
really drop; the run's mask is therefore None.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

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
    "summed activation (s = keep_ratio × units, default 0.3, so that the 2s candidates leave "
    "units out and the search has a choice). Each iteration's proposal can be worse than an "
    "earlier one; the block keeps the best found, so the residual curve never rises and "
    "flattens once the search settles. Selection runs in eval mode (BatchNorm uses, and keeps, "
    "its running statistics). The kept channels are cut out physically "
    "(MLP hidden layers, conv pairs, ResNet block internals, MobileNetV2 expanded channels), so "
    "parameters and FLOPs really drop; the rest of the epochs fine-tune the smaller network."
)

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Hidden batches are merged up to this many elements (64 MiB of float32) for the iterations.
MERGE_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class IspaspConfig:
    # s = floor(keep_ratio · C) units kept per block (2s < C)
    keep_ratio: float = setting(0.3, label="keep ratio",
                                help="fraction of each block's hidden units (channels) kept: "
                                     "i-SpaSP's target, in place of the run's target sparsity",
                                bounds=Bounds(0, 1, low_open=True), step=0.05)
    iterations: int = setting(20, label="iterations T",  # bounded: work
                              help="i-SpaSP iterations per block", bounds=Bounds(1, 1000))
    pruning_batches: int = setting(5, label="pruning batches",
                                   help="batches (of the run's batch size) in the pruning set",
                                   bounds=Bounds(1, 1000))
    pretrain_fraction: float = setting(0.6, label="dense pre-training (share of epochs)",
                                       help="share of the epochs trained dense before pruning",
                                       bounds=Bounds(0, 1), step=0.05)
    finetune_fraction: float = setting(0.4, label="fine-tuning (share of epochs)",
                                       help="share of the epochs fine-tuning the pruned network",
                                       bounds=Bounds(0, 1), step=0.05)
    finetune_per_block_steps: int = setting(0, label="fine-tuning steps per block",
                                            help="optimizer steps after each block (0 = off)",
                                            bounds=Bounds(0, 100_000))

    def __post_init__(self):
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}; e.g. 0.3")
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
    return (isinstance(module, nn.Conv2d) and module.groups > 1
            and module.groups == module.in_channels == module.out_channels)


def _channel_count(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _prune_out_fn(module: nn.Module):
    return tp.prune_linear_out_channels if isinstance(module, nn.Linear) else tp.prune_conv_out_channels


def dependency_graph(model: nn.Module, example: torch.Tensor,
                     order: list[nn.Module] | None = None) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``model`` (traced in eval mode, so that BatchNorm
    running statistics stay untouched). ``order``, when given, receives the weight layers in the
    order the forward pass calls them.

    Raises ConfigError when the model cannot be traced.
    """
    handles = []
    if order is not None:
        def called(module, args):
            if module not in order:
                order.append(module)
        handles = [m.register_forward_pre_hook(called) for m in model.modules()
                   if _is_weight_layer(m)]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():  # the graph is read from autograd's grad_fn chain
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # tracing arbitrary Python raises many types
        raise ConfigError(f"i-SpaSP cannot trace {type(model).__name__} ({exc}); choose another "
                          f"model or method") from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def find_blocks(model: nn.Module, example: torch.Tensor) -> list[Block]:
    """The model's i-SpaSP blocks in data-flow order; ``example`` is one input batch.

    A block is read off Torch-Pruning's dependency graph: the group of everything coupled to
    layer1's output channels must hold no other producer of those channels than layer1 (a
    residual sum or concatenation would add one), exactly one dense layer reading them (layer2,
    whose input columns go with them), and otherwise only channel-wise modules (BatchNorms and
    depthwise convs, pruned with them) and element-wise operations, at least one of them (the
    activation; a linear bottleneck conv-BN-conv is not a hidden layer).

    Raises ConfigError when the model cannot be traced.
    """
    order: list[nn.Module] = []
    graph = dependency_graph(model, example, order)
    names = {module: name for name, module in model.named_modules()}
    blocks = [block for layer1 in order if (block := _block_from(graph, names, layer1))]
    return blocks


def _block_from(graph: tp.DependencyGraph, names: dict[nn.Module, str],
                layer1: nn.Module) -> Block | None:
    """The block whose hidden channels ``layer1`` produces, or None when it has none."""
    group = graph.get_pruning_group(layer1, _prune_out_fn(layer1), idxs=[0])
    producers, readers, norms, depthwise, activated = [], [], [], [], False
    for item in group:
        module, handler = item.dep.target.module, item.dep.handler
        out = graph.is_out_channel_pruning_fn(handler)
        if isinstance(module, tp.ops._ElementWiseOp):
            activated = True
        elif isinstance(module, _NORMS):
            norms.append(module)
        elif _is_depthwise(module):
            if out and module not in depthwise:
                depthwise.append(module)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            (producers if out else readers).append(item)
        elif not isinstance(module, tp.ops._ReshapeOp):
            # a concatenation, split, the model's output or another kind of layer holds these
            # channels too: not a plain hidden layer
            return None
    if not activated or [i.dep.target.module for i in producers] != [layer1] or len(readers) != 1:
        return None
    layer2 = readers[0].dep.target.module
    if not _is_weight_layer(layer2) or any(names.get(m) is None for m in norms + depthwise):
        return None
    positions = len(readers[0].idxs)  # features per channel after a flatten (else 1)
    node = graph.module2node[layer2]
    norm2 = None
    if len(node.outputs) == 1 and isinstance(node.outputs[0].module, _NORMS):
        norm2 = names.get(node.outputs[0].module)
    return Block(names[layer1], tuple(dict.fromkeys(names[m] for m in norms)),
                 tuple(names[m] for m in depthwise), names[layer2], norm2,
                 _channel_count(layer1), positions)


# ---------------------------------------------------------------------------------------------
# The i-SpaSP loop on one block


@dataclass
class BlockResult:
    kept: list[int]           # the chosen units (the best support found), ascending
    residuals: list[float]    # L of the best support found up to each iteration
    dense_norm: float         # ‖Y_dense‖, for the relative residual
    candidates: list[float]   # L of each iteration's own support (may rise and fall)


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
    second half (layer2 and its BatchNorm, which the caller puts in eval mode so that Y is
    measured with the running statistics and leaves them untouched).

    Each iteration proposes a support S_t (steps a-d of METHODS.md §4); like CoSaMP's proposals,
    S_t is chosen by the summed activations m_c among the candidates, not by its residual, so
    L(S_t) can rise from one iteration to the next. The block keeps the best support found so
    far: ``residuals[t]`` = min over iterations ≤ t of L(S_t), which never increases, and
    ``candidates[t]`` = L(S_t) itself. The search continues from S_t either way.
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
    candidates_l: list[float] = []
    best, best_loss = selected, math.inf
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
            candidates_l.append(loss)
            if loss < best_loss:  # the best support so far is what the block keeps
                best, best_loss = selected, loss
            residuals.append(best_loss)
        if not want_grad:
            break
        omega = torch.argsort(importance, descending=True, stable=True)[:omega_size]
        merged = selected.clone()
        merged[omega] = True
        candidates = merged.nonzero().flatten()  # ascending
        top = torch.argsort(m[candidates], descending=True, stable=True)[:keep]
        selected = torch.zeros_like(selected)
        selected[candidates[top]] = True
    kept = best.nonzero().flatten().tolist()
    return BlockResult(kept, residuals, math.sqrt(max(dense_sq, 0.0)), candidates_l)


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


def prune_block(model: nn.Module, block: Block, kept: list[int],
                graph: tp.DependencyGraph) -> None:
    """Keep only the ``kept`` hidden channels of ``block``, in place.

    ``graph`` is ``dependency_graph(model, ...)``; it stays valid across successive blocks.
    Torch-Pruning removes the other channels from layer1's rows, everything channel-wise after
    it (BatchNorms with their running statistics, depthwise convs) and layer2's input columns
    (all positions of a channel after a flatten); the kept ones keep their order.
    """
    modules = dict(model.named_modules())
    layer1 = modules[block.layer1]
    keep = set(kept)
    dropped = [c for c in range(_channel_count(layer1)) if c not in keep]
    if dropped:
        graph.get_pruning_group(layer1, _prune_out_fn(layer1), idxs=dropped).prune()


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
    "block": str, "iteration": int, "residual": float, "relative": float, "candidate": float},
    "one CoSaMP iteration of one block: ½‖Y_dense − Y_S‖² of the kept set, its norm relative to "
    "‖Y_dense‖, and the same residual of that iteration's own candidate support")
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
    @classmethod
    def reads_target_sparsity(cls, config, method_config) -> bool:
        return False

    @classmethod
    def target_text(cls, config, method_config) -> str:  # the target sparsity is not read
        return f"keep ratio {method_config.keep_ratio:g} of each block's units"

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
        graph = dependency_graph(model, inputs[0][:2])
        kept_all = []
        for i, block in enumerate(blocks):
            ctx.check_stop()
            modules = dict(model.named_modules())
            hidden = merge_batches(capture_hidden(model, modules[block.layer2], inputs))
            keep = max(1, int(math.floor(cfg.keep_ratio * block.channels)))
            # Eval mode: layer2's BatchNorm normalises with its running statistics, as the
            # pruned network will, and the selection's passes leave those statistics alone.
            was_training = model.training
            model.eval()
            try:
                result = ispasp_select(hidden, _output_fn(model, block), block.channels, keep,
                                       cfg.iterations, should_stop=ctx.check_stop)
            finally:
                model.train(was_training)
            del hidden
            prune_block(model, block, result.kept, graph)
            for it, residual in enumerate(result.residuals, start=1):
                ctx.recorder.trace(ISPASP_RESIDUAL.name, ctx.steps_done, {
                    "block": block.name, "iteration": it, "residual": residual,
                    "relative": math.sqrt(2.0 * residual) / max(result.dense_norm, 1e-12),
                    "candidate": result.candidates[it - 1]})
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
