"""Micro-structured weight unification and pruning, trained with ADMM.

Lin, Jiang, Wang, Xu, Wang, Liu, Li, "Efficient Micro-Structured Weight Unification and Pruning
for Neural Network Compression", arXiv 2106.08301. Rule implemented (METHODS.md §6):

* each prunable weight is cut into micro-blocks (default 1×4: one output channel × four input
  channels at one kernel position; a linear layer is a 1×1 "kernel"); a *unified* block stores
  one magnitude and one sign per weight, a *pruned* block is a unified block of magnitude 0;
* target: a fraction q (the run's sparsity) of the blocks pruned, all others unified;
* projection of a block v: 0 if ‖v‖₂ is among the q fraction of smallest block norms (per layer
  or over all layers), else mean(|v|) · sign(v);
* ADMM: the loss gets (ρ/2)‖W − Z + U‖²_F; after each round of SGD steps Z ← proj(W + U) and
  U ← U + W − Z; finally W is projected hard and fine-tuned with the structure frozen (one
  trainable magnitude per block, the block's sign pattern fixed, pruned blocks fixed at 0).

Fine-tuning trains each kept block's magnitude as a signed scale m: the block is m · s with s
its frozen ±1 pattern. A scale that crosses zero flips the whole block's signs together, which
is still a unified block stored at the same cost (|m| and the flipped sign bits). Clamping m at
0 instead would turn such kept blocks into zero blocks: on the default run that zeroed 0.6 % of
the blocks beyond q while q was reported. The summary's pruned fraction is counted from the
final weights (all-zero blocks), so it is the true one.

Shapes that the block does not divide: the blocks at the edge are smaller (ragged) instead of
padded, so every weight belongs to exactly one block and nothing is left unprunable; their norms
are compared as they are (a smaller block tends to have a smaller norm). A weight that is exactly
0 gets sign +1, so a unified block never holds a 0 next to nonzero values.

Storage report: 32 bits per dense weight; a unified block costs one 32-bit magnitude plus one
sign bit per weight; a pruned block costs nothing (as in the paper's accounting, the map of which
blocks are pruned is not counted). Multiplies: a unified block needs one multiply per output row
it spans (m · Σ ±x), i.e. one per block for the default 1×k blocks, against one per weight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from pruning.config import Bounds, setting
from pruning.masks import Mask, prunable_layers
from pruning.methods.base import METHODS, Method, MethodResult, percent
from pruning.results import TraceKind
from pruning.training import TrainHooks, fit

DENSE_BITS = 32       # one float32 per dense weight
MAGNITUDE_BITS = 32   # one float32 magnitude per unified block
SIGN_BITS = 1         # one sign bit per weight of a unified block

DESCRIPTION = (
    "Micro-structured weight unification and pruning (Lin et al., arXiv 2106.08301): weights are "
    "cut into small blocks (default 1×4 along the input channels at each kernel position); a "
    "fraction q of blocks (your sparsity) is pruned and every other block is unified, i.e. all its "
    "weights share one magnitude and keep their own signs, so it is stored as one 32-bit value "
    "plus one sign bit per weight and needs one multiply. ADMM pulls the weights towards that "
    "structure: a penalty (ρ/2)‖W − Z + U‖² during the first part of training (admm_fraction), with "
    "Z the projection of W + U after each round; then the weights are projected and fine-tuned "
    "with the structure frozen (one magnitude per block, trained as a signed scale: each block's "
    "sign pattern is fixed up to one common flip, so a kept block never turns into a zero "
    "block). Interpretation: blocks at "
    "the edge of a layer that the block size does not divide are smaller; which blocks are pruned "
    "is chosen by L2 norm per layer (scope=layerwise, the default) or over all layers "
    "(scope=global, which can prune a layer of small weights away entirely)."
)


@dataclass(frozen=True)
class UnificationConfig:
    block: tuple = setting((1, 4), label="micro-block (out × in channels)",
                           help="output × input channels of the weight blocks that are unified "
                                "or pruned together, e.g. 1x4")
    rho: float = setting(0.5, label="ρ (ADMM penalty weight)",
                         help="weight of ‖W − Z + U‖² (summed, not averaged, squares)",
                         bounds=Bounds(0, None, low_open=True), step=0.1)
    admm_fraction: float = setting(0.7, label="ADMM phase (share of epochs)",
                                   help="share of the epochs spent in the ADMM phase; the rest "
                                        "fine-tunes", bounds=Bounds(0, 1, low_open=True),
                                   step=0.05)
    # Z/U updates in the ADMM phase; 0 = one per epoch. With Adam, rounds of only a few steps
    # let U grow faster than W can follow and ‖W − Z‖ stops falling.
    admm_rounds: int = setting(0, label="ADMM rounds",
                               help="Z/U updates in the ADMM phase; 0 = one per epoch",
                               bounds=Bounds(0, 100_000))
    scope: Literal["layerwise", "global"] = setting(
        "layerwise", label="block scope", help="where the smallest-norm blocks are chosen",
        labels={"layerwise": "per layer", "global": "over all layers"})

    def __post_init__(self):
        if len(self.block) != 2 or min(self.block) < 1:
            raise ValueError(f"block must be two positive sizes such as 1,4 or 2,2, got {self.block}")
        if self.rho <= 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")
        if not 0.0 < self.admm_fraction <= 1.0:
            raise ValueError(f"admm_fraction must be in (0, 1], got {self.admm_fraction}")
        if self.admm_rounds < 0:
            raise ValueError(f"admm_rounds must be >= 0, got {self.admm_rounds}")
        if self.scope not in ("layerwise", "global"):
            raise ValueError(f"scope must be layerwise or global, got {self.scope!r}")


class BlockPartition:
    """The micro-blocks of one weight tensor of shape (O, I, *kernel).

    ``block_id`` (the weight's shape, int64) names each weight's block; blocks are numbered
    ((kernel position · n_out_blocks) + output block) · n_in_blocks + input block.
    """

    def __init__(self, shape: Sequence[int], block: Sequence[int], device=None):
        self.shape = tuple(shape)
        rows, cols = int(block[0]), int(block[1])
        out_ch, in_ch = self.shape[0], self.shape[1] if len(self.shape) > 1 else 1
        positions = math.prod(self.shape[2:])
        n_out, n_in = -(-out_ch // rows), -(-in_ch // cols)
        o = torch.arange(out_ch, device=device).view(out_ch, 1, 1) // rows
        i = torch.arange(in_ch, device=device).view(1, in_ch, 1) // cols
        k = torch.arange(positions, device=device).view(1, 1, positions)
        self.block_id = ((k * n_out + o) * n_in + i).reshape(self.shape)  # (O, I, *kernel)
        self.flat_id = self.block_id.flatten()
        self.n_blocks = positions * n_out * n_in
        self.sizes = torch.bincount(self.flat_id, minlength=self.n_blocks)  # (n_blocks,)
        # Output rows each block spans (ragged at the bottom edge): its multiplies per position.
        row_counts = torch.clamp(out_ch - torch.arange(n_out, device=device) * rows, max=rows)
        self.rows = row_counts.view(1, n_out, 1).expand(positions, n_out, n_in).reshape(-1)

    def _reduce(self, values: torch.Tensor, how: str) -> torch.Tensor:
        out = torch.zeros(self.n_blocks, dtype=values.dtype, device=values.device)
        return out.scatter_reduce(0, self.flat_id, values.flatten(), reduce=how, include_self=False)

    def norms(self, weight: torch.Tensor) -> torch.Tensor:
        """‖v‖₂ of every block, (n_blocks,)."""
        return self._reduce(weight.square(), "sum").sqrt()

    def mean_abs(self, weight: torch.Tensor) -> torch.Tensor:
        return self._reduce(weight.abs(), "mean")

    def max_abs(self, weight: torch.Tensor) -> torch.Tensor:
        return self._reduce(weight.abs(), "amax")

    def min_abs(self, weight: torch.Tensor) -> torch.Tensor:
        return self._reduce(weight.abs(), "amin")

    def expand(self, per_block: torch.Tensor) -> torch.Tensor:
        """(n_blocks,) -> the weight's shape, each weight taking its block's value."""
        return per_block[self.block_id]


def signs(weight: torch.Tensor) -> torch.Tensor:
    """±1 per weight; 0 counts as +1 so that a unified block has one absolute value."""
    return torch.where(weight < 0, -1.0, 1.0).to(weight.dtype)


def select_kept(norms: list[torch.Tensor], q: float, scope: str) -> list[torch.Tensor]:
    """Bool (n_blocks,) per layer: False for the round(q · n) smallest norms (per layer/global)."""
    def keep_largest(values: torch.Tensor) -> torch.Tensor:
        keep = torch.ones_like(values, dtype=torch.bool)
        k = int(round(q * values.numel()))
        if k > 0:
            # Stable sort: equal norms are pruned in block order, deterministically.
            keep[torch.sort(values, stable=True).indices[:k]] = False
        return keep

    if scope == "layerwise":
        return [keep_largest(n) for n in norms]
    keep = keep_largest(torch.cat(norms))
    return list(torch.split(keep, [n.numel() for n in norms]))


@torch.no_grad()
def project(weights: list[torch.Tensor], partitions: list[BlockPartition], q: float,
            scope: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Projection onto the unified-and-pruned set: (Z per layer, kept blocks per layer)."""
    kept = select_kept([p.norms(w) for w, p in zip(weights, partitions)], q, scope)
    out = []
    for w, p, keep in zip(weights, partitions, kept):
        magnitude = p.mean_abs(w) * keep  # (n_blocks,); pruned blocks get 0
        out.append(p.expand(magnitude) * signs(w))
    return out, kept


def storage_report(partitions: list[BlockPartition], kept: list[torch.Tensor],
                   positions: list[int] | None = None) -> dict[str, Any]:
    """Bits and multiplies of the unified model against the dense one (see module docstring).

    ``positions``: output positions per layer and image (H_out · W_out for a conv, 1 for a
    linear layer); multiplies are per image.
    """
    positions = positions or [1] * len(partitions)
    layers = []
    for p, keep, pos in zip(partitions, kept, positions):
        keep = keep.to(p.sizes.device)
        weights = int(p.sizes.sum())
        unified_weights = int(p.sizes[keep].sum())
        unified_blocks = int(keep.sum())
        layers.append({
            "weights": weights, "blocks": p.n_blocks, "unified_blocks": unified_blocks,
            "pruned_blocks": p.n_blocks - unified_blocks,
            "dense_bits": DENSE_BITS * weights,
            "unified_bits": MAGNITUDE_BITS * unified_blocks + SIGN_BITS * unified_weights,
            "dense_multiplies": weights * pos,
            "unified_multiplies": int(p.rows[keep].sum()) * pos,
        })
    total = {key: sum(layer[key] for layer in layers) for key in layers[0]} if layers else {}
    total["compression"] = total["dense_bits"] / max(total["unified_bits"], 1) if layers else 1.0
    total["multiply_reduction"] = (total["dense_multiplies"] / max(total["unified_multiplies"], 1)
                                   if layers else 1.0)
    return {"total": total, "layers": layers}


class AdmmHooks(TrainHooks):
    """ADMM phase: penalty (ρ/2)‖W − Z + U‖² in the loss, Z and U updated every round."""

    def __init__(self, names: list[str], weights: list[nn.Parameter],
                 partitions: list[BlockPartition], q: float, cfg: UnificationConfig,
                 steps_per_round: int, rounds: int, recorder=None, global_step=None):
        self.names, self.weights, self.partitions = names, weights, partitions
        self.q, self.cfg = q, cfg
        self.steps_per_round, self.rounds = steps_per_round, rounds
        self.recorder = recorder
        self.global_step = global_step or (lambda: 0)
        self.z: list[torch.Tensor] = []
        self.u: list[torch.Tensor] = []
        self.kept: list[torch.Tensor] = []
        self.round = 0
        self.residuals: list[float] = []
        self._mask: Mask | None = None

    def on_train_start(self, model, total_steps):
        with torch.no_grad():
            self.z, self.kept = project([w.detach() for w in self.weights], self.partitions,
                                        self.q, self.cfg.scope)
            self.u = [torch.zeros_like(w) for w in self.weights]
        self._mask = None
        self._record()

    def loss(self, model, loss):
        penalty = sum((w - z + u).square().sum() for w, z, u in zip(self.weights, self.z, self.u))
        return loss + 0.5 * self.cfg.rho * penalty

    @torch.no_grad()
    def after_step(self, model, step, progress, batch):
        if step % self.steps_per_round != 0 or self.round >= self.rounds:
            return
        self.z, self.kept = project([w + u for w, u in zip(self.weights, self.u)],
                                    self.partitions, self.q, self.cfg.scope)
        for w, z, u in zip(self.weights, self.z, self.u):
            u.add_(w - z)
        self.round += 1
        self._mask = None
        self._record()

    @torch.no_grad()
    def _record(self) -> None:
        residual = math.sqrt(sum(float((w - z).square().sum()) for w, z in zip(self.weights, self.z)))
        scale = math.sqrt(sum(float(w.square().sum()) for w in self.weights))
        self.residuals.append(residual)
        if self.recorder is None:
            return
        blocks = sum(p.n_blocks for p in self.partitions)
        pruned = sum(int((~k).sum()) for k in self.kept)
        # How far W itself is from unified: blocks whose |w| spread is within 5% of their mean.
        close, kept_total = 0, 0
        for w, p, keep in zip(self.weights, self.partitions, self.kept):
            spread = p.max_abs(w) - p.min_abs(w)
            close += int(((spread <= 0.05 * p.mean_abs(w)) & keep).sum())
            kept_total += int(keep.sum())
        self.recorder.trace(ADMM.name, self.global_step(), {
            "round": self.round, "w_minus_z": residual,
            "w_minus_z_rel": residual / max(scale, 1e-12),
            "pruned_fraction": pruned / blocks, "unified_fraction": (blocks - pruned) / blocks,
            "w_unified_fraction": close / max(kept_total, 1),
        })

    def mask(self):
        if self._mask is None:
            self._mask = kept_mask(self.names, self.partitions, self.kept)
        return self._mask

    def target_sparsity(self):
        return self.q


@torch.no_grad()
def zero_block_fraction(weights: list[torch.Tensor], partitions: list[BlockPartition]) -> float:
    """The fraction of blocks whose weights are all zero, over all layers."""
    zero = sum(int((p.max_abs(w.detach()) == 0).sum()) for w, p in zip(weights, partitions))
    return zero / sum(p.n_blocks for p in partitions)


def kept_mask(names, partitions, kept) -> Mask:
    return Mask({name: p.expand(keep).cpu() for name, p, keep in zip(names, partitions, kept)})


class UnifiedBlocks(nn.Module):
    """Parametrization of a frozen structure: weight = sign ⊙ expand(magnitude ⊙ kept).

    The trainable tensor is one magnitude per block (n_blocks,); signs and the pruned blocks are
    buffers, so training can change neither.
    """

    def __init__(self, partition: BlockPartition, sign: torch.Tensor, kept: torch.Tensor):
        super().__init__()
        self.partition = partition
        self.register_buffer("sign", sign)                  # weight's shape, ±1
        self.register_buffer("kept", kept.to(sign.dtype))   # (n_blocks,), 1 = unified

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        # (n_blocks,) -> weight's shape
        return self.sign * self.partition.expand(magnitude * self.kept)

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        # The largest |w| of a block: exact for a unified block (all its |w| are equal).
        return self.partition.max_abs(weight) * self.kept


class FinetuneHooks(TrainHooks):
    """Fine-tuning with the structure frozen: the parametrization keeps signs and pruned blocks
    fixed, so training needs no hook of its own; this reports the mask and target."""

    def __init__(self, magnitudes: list[nn.Parameter], mask: Mask, q: float):
        self.magnitudes, self._mask, self.q = magnitudes, mask, q

    def mask(self):
        return self._mask

    def target_sparsity(self):
        return self.q


def freeze_structure(modules: list[nn.Module], partitions: list[BlockPartition],
                     projected: list[torch.Tensor], kept: list[torch.Tensor]) -> list[nn.Parameter]:
    """Parametrize each weight as UnifiedBlocks of its projection; returns the magnitudes."""
    for module, p, z, keep in zip(modules, partitions, projected, kept):
        with torch.no_grad():
            module.weight.copy_(z)
        parametrize.register_parametrization(module, "weight", UnifiedBlocks(p, signs(z), keep))
    return [module.parametrizations.weight.original for module in modules]


def release_structure(modules: list[nn.Module]) -> None:
    """Write the unified weights back as plain parameters."""
    for module in modules:
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


@torch.no_grad()
def output_positions(model: nn.Module, layers: dict[str, nn.Module], example: torch.Tensor) -> list[int]:
    """Output positions per image of each layer (H·W of a conv output, 1 for a linear layer)."""
    sizes: dict[str, int] = {}
    handles = [module.register_forward_hook(
        lambda mod, inp, out, name=name: sizes.__setitem__(name, math.prod(out.shape[2:])))
        for name, module in layers.items()]
    was_training = model.training
    model.eval()
    try:
        model(example[:1])  # (1, C, H, W)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return [sizes.get(name, 1) for name in layers]


ADMM = TraceKind("admm", {
    "round": int, "w_minus_z": float, "w_minus_z_rel": float, "pruned_fraction": float,
    "unified_fraction": float, "w_unified_fraction": float},
    "each ADMM round: ‖W − Z‖ (absolute, relative), blocks pruned/unified in Z, and how many "
    "kept blocks of W itself are already nearly unified")
_STORAGE_FIELDS = ("weights", "blocks", "unified_blocks", "pruned_blocks", "dense_bits",
                   "unified_bits", "dense_multiplies", "unified_multiplies")
UNIFICATION_STORAGE = TraceKind("unification_storage", {
    "layers": list[str], **{key: list[int] for key in _STORAGE_FIELDS},
    "total": dict[str, float]},
    "at the end: bits and multiplies per layer (lists in layer order) and in total")


@dataclass(frozen=True)
class UnificationExtras:
    """Unification's own results (the run summary's ``extras``)."""
    unification_storage: dict[str, float]   # storage_report totals (bits, multiplies, ratios)
    unification_block: list[int]            # block shape
    unification_pruned_block_fraction: float
    admm_w_minus_z: list[float]             # ‖W − Z‖ after each ADMM round


@METHODS.register("unification", config=UnificationConfig, description=DESCRIPTION)
class UnificationMethod(Method):
    @classmethod
    def target_text(cls, config, method_config) -> str:
        rows, cols = method_config.block
        return f"{percent(config.sparsity)} of the {rows}×{cols} weight blocks"

    extras = UnificationExtras
    traces = (ADMM, UNIFICATION_STORAGE)
    description = DESCRIPTION

    def run(self, model: nn.Module, ctx) -> MethodResult:
        cfg: UnificationConfig = self.method_config or UnificationConfig()
        config = ctx.config
        q = config.sparsity
        ctx.total_epochs = config.epochs
        model.to(ctx.device)
        layers = prunable_layers(model, config.prune_first_last)
        names = list(layers)
        weights = [module.weight for module in layers.values()]
        partitions = [BlockPartition(w.shape, cfg.block, device=ctx.device) for w in weights]

        admm_epochs = min(config.epochs, max(1, round(cfg.admm_fraction * config.epochs)))
        if cfg.admm_fraction < 1.0 and config.epochs > 1:
            admm_epochs = min(admm_epochs, config.epochs - 1)
        finetune_epochs = config.epochs - admm_epochs
        admm_steps = admm_epochs * ctx.data.steps_per_epoch("train", config.batch_size)
        rounds = cfg.admm_rounds or admm_epochs
        steps_per_round = max(1, admm_steps // rounds)
        rounds = min(rounds, admm_steps // steps_per_round)

        admm = AdmmHooks(names, weights, partitions, q, cfg, steps_per_round, rounds,
                         recorder=ctx.recorder, global_step=lambda: ctx.steps_done)
        fit(model, ctx, epochs=admm_epochs, hooks=admm, phase="admm")

        # Hard projection of W (not W + U), then fine-tune only one magnitude per block.
        with torch.no_grad():
            z, kept = project([w.detach() for w in weights], partitions, q, cfg.scope)
            for w, zw in zip(weights, z):
                w.copy_(zw)
        mask = kept_mask(names, partitions, kept)
        if finetune_epochs > 0:
            magnitudes = freeze_structure(list(layers.values()), partitions, z, kept)
            try:
                fit(model, ctx, epochs=finetune_epochs, hooks=FinetuneHooks(magnitudes, mask, q),
                    phase="finetune")
            finally:
                release_structure(list(layers.values()))

        example = next(ctx.data.batches("test", 1))[0].to(ctx.device)
        storage = storage_report(partitions, kept, output_positions(model, layers, example))
        ctx.recorder.trace(UNIFICATION_STORAGE.name, ctx.steps_done, {
            "layers": names, **{key: [layer[key] for layer in storage["layers"]]
                                for key in storage["layers"][0]}, "total": storage["total"]})
        summary = {"unification_storage": storage["total"],
                   "unification_block": list(cfg.block),
                   "unification_pruned_block_fraction": zero_block_fraction(
                       [module.weight for module in layers.values()], partitions),
                   "admm_w_minus_z": admm.residuals}
        return MethodResult(model, mask, summary)
