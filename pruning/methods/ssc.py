"""SSC: structured sparse convolution, a fixed kernel pattern set before training (METHODS.md §5).

Verma et al., "Structured Sparse Convolution" (arXiv 2210.12818), related to HetConv (Singh et
al., "HetConv: Heterogeneous Kernel-Based Convolutions for Deep CNNs", CVPR 2019). What is
confirmed: SSC replaces a convolution with one whose filters follow a fixed structured sparsity
pattern, trained from scratch, and it generalises depthwise, group and pointwise convolution.

INTERPRETATION (the paper's exact kernel patterns could not be confirmed). For output filter f
and input channel c the kernel is full K×K, pointwise (centre tap only) or empty:

* full      if P_k > 0 and (φ(c) − φ(f)) mod P_k = 0,
* pointwise if not full, P_p > 0 and (φ(c) − φ(f)) mod P_p = 0,
* empty     otherwise,

with periods P_k (``period_full``) and P_p (``period_pointwise``) and a channel layout φ:
``"shifted"`` (the default, as in HetConv: φ(c) = c, φ(f) = f, so neighbouring filters take
their full kernels on neighbouring channels) or ``"blocked"`` (φ(c) = ⌊c·P / C_in⌋,
φ(f) = ⌊f·P / C_out⌋: contiguous channel groups, PyTorch's ``groups`` order). Special cases:
P_k = 1 is a dense conv; P_k = C_in = C_out with P_p = 0 is a depthwise conv; P_k = g with
P_p = 0 is a g-group conv (exactly PyTorch's with ``layout="blocked"``, the same up to a channel
permutation with ``"shifted"``); P_k = 0 with P_p = 1 is a pointwise (1×1) conv; P_k = P with
P_p = 1 is HetConv with part P.

Fast forward (no dense conv times a mask). The pattern splits the channels into residue
classes: filter class r reads full kernels only from channel class r. After permuting the input
channels and the filters by class, the full part is one grouped K×K conv (groups = classes,
padded with zero channels where classes differ in size) and the pointwise part one 1×1 conv
(grouped the same way for P_p > 1) on the centre taps' input positions; the two outputs are
summed and the filters put back in order. Where the permutation is the identity (blocked layout,
depthwise, dense) no channel is moved. The pointwise 1×1 weight holds zeros where a filter has a
full kernel (its centre tap is already in the K×K part): at most 1/P_k of a 1×1 conv, i.e. under
1/(K²·P_k) of the dense conv's work. A part whose grouped form would not do less arithmetic than
the dense conv (class sizes so uneven that padding fills the groups back up) falls back to the
masked form: one conv with the dense-equivalent weight of that part. FLOPs are counted as the
multiply-adds the pattern needs, 2 · stored weights · output positions (``needed_flops``), not
what the fast form dispatches (those zeros and padded channels). ``masked_forward`` is the
masked dense conv with the same parameters, for comparison and tests. How much faster the
grouped form runs depends on the backend: on CPUs (oneDNN) a grouped conv with only a few
channels per group (say 2–4, as at density 0.1 on 32–64 channels) can be slower than the dense
conv despite its fraction of the FLOPs, while groups of 16 or more channels, depthwise and
pointwise convs run faster than the masked dense conv.

Parameters are stored compactly (only the pattern's entries), so a model's parameter count is
the pattern's count; ``to_ssc`` chooses periods per layer to come as close to a parameter budget
as the periods allow without exceeding it, and ``ssc_baseline_configs`` gives the sweep
comparing SSC with pruning at initialisation (random, SNIP, GraSP, SynFlow) at the same
parameter count, the paper's baselines.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pruning.config import Bounds, ConfigError, RunConfig, setting
from pruning.masks import prunable_layers, prunable_parameters
from pruning.methods.base import METHODS, Method, MethodResult, method_config, percent
from pruning.metrics.sparsity import param_counts
from pruning.results import TraceKind
from pruning.training import fit

DESCRIPTION = (
    "SSC, structured sparse convolution (Verma et al., arXiv 2210.12818; related to HetConv, "
    "Singh et al., CVPR 2019): every conv except the stem is replaced before training by one "
    "with a fixed pattern: filter f has full K×K kernels on the input channels c with "
    "(c − f) mod P_k = 0, centre-tap (1×1) kernels on (c − f) mod P_p = 0 among the rest, and "
    "nothing elsewhere; then the network is trained from scratch. Depthwise, group, pointwise "
    "and dense convolutions are special cases, and the layer runs as a grouped conv plus a 1×1 "
    "conv over permuted channels, so it is really cheaper. Periods are chosen per layer to meet "
    "the density (default: 1 − target sparsity). Interpretation: the paper's exact kernel "
    "patterns could not be confirmed; this periodic full/pointwise/empty pattern is ours."
)

EMPTY, POINTWISE, FULL = 0, 1, 2
LAYOUTS = ("shifted", "blocked")
PATTERN_PREVIEW = 32  # filters × channels shown in the "ssc_pattern" trace


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _phase(index: torch.Tensor, count: int, period: int, layout: str) -> torch.Tensor:
    """φ of channel/filter ``index`` for ``period`` (the class is φ mod period)."""
    if layout == "shifted":
        return index
    return index * period // count


def pattern_matrix(in_channels: int, out_channels: int, period_full: int, period_pointwise: int,
                   layout: str = "shifted") -> torch.Tensor:
    """(C_out, C_in) int8: 2 = full K×K kernel, 1 = pointwise (centre tap), 0 = empty."""
    c = torch.arange(in_channels).unsqueeze(0)   # (1, C_in)
    f = torch.arange(out_channels).unsqueeze(1)  # (C_out, 1)
    full = torch.zeros(out_channels, in_channels, dtype=torch.bool)
    point = torch.zeros_like(full)
    if period_full > 0:
        full = (_phase(c, in_channels, period_full, layout)
                - _phase(f, out_channels, period_full, layout)) % period_full == 0
    if period_pointwise > 0:
        point = ((_phase(c, in_channels, period_pointwise, layout)
                  - _phase(f, out_channels, period_pointwise, layout)) % period_pointwise == 0)
        point &= ~full
    return full.to(torch.int8) * FULL + point.to(torch.int8) * POINTWISE


@dataclass(frozen=True)
class _Plan:
    """How one part (full or pointwise) of the pattern runs as a grouped conv.

    ``in_index``: (G·n_in,) input channel for each grouped input slot (C_in = a zero channel);
    ``row_of_filter``: (C_out,) grouped output row of each filter (G·n_out = none: zero);
    ``slots``: (entries,) flat position in the (G·n_out, n_in) grouped weight of each stored
    entry; ``dense_pos``: (entries,) flat position f·C_in + c of each entry.
    """
    groups: int
    n_in: int
    n_out: int
    in_index: torch.Tensor
    row_of_filter: torch.Tensor
    slots: torch.Tensor
    dense_pos: torch.Tensor


def _class_plan(support: torch.Tensor, period: int, layout: str) -> _Plan:
    """Group ``support`` ((C_out, C_in) bool, nonzero only within classes mod ``period``)."""
    out_channels, in_channels = support.shape
    in_class = _phase(torch.arange(in_channels), in_channels, period, layout) % period
    out_class = _phase(torch.arange(out_channels), out_channels, period, layout) % period
    active = [r for r in range(period)
              if bool((in_class == r).any()) and bool((out_class == r).any())]
    members_in = [torch.nonzero(in_class == r).flatten() for r in active]
    members_out = [torch.nonzero(out_class == r).flatten() for r in active]
    groups = len(active)
    n_in = max((m.numel() for m in members_in), default=0)
    n_out = max((m.numel() for m in members_out), default=0)
    in_index = torch.full((groups * n_in,), in_channels, dtype=torch.long)
    row_of_filter = torch.full((out_channels,), groups * n_out, dtype=torch.long)
    column_of_channel = torch.full((in_channels,), -1, dtype=torch.long)
    for g, (ins, outs) in enumerate(zip(members_in, members_out)):
        in_index[g * n_in:g * n_in + ins.numel()] = ins
        column_of_channel[ins] = torch.arange(ins.numel())
        row_of_filter[outs] = g * n_out + torch.arange(outs.numel())
    return _entries_plan(support, groups, n_in, n_out, in_index, row_of_filter,
                         column_of_channel, in_channels)


def _entries_plan(support, groups, n_in, n_out, in_index, row_of_filter, column_of_channel,
                  in_channels) -> _Plan:
    f, c = torch.nonzero(support, as_tuple=True)
    slots = row_of_filter[f] * n_in + column_of_channel[c]
    order = torch.argsort(slots)  # store entries in grouped-weight order (a plain view when dense)
    return _Plan(groups, n_in, n_out, in_index, row_of_filter, slots[order],
                 (f * in_channels + c)[order])


def _dense_plan(support: torch.Tensor) -> _Plan:
    """The masked form: one group holding every channel and filter in order."""
    out_channels, in_channels = support.shape
    return _entries_plan(support, 1, in_channels, out_channels, torch.arange(in_channels),
                         torch.arange(out_channels), torch.arange(in_channels), in_channels)


def _plan_for(support: torch.Tensor, period: int, layout: str) -> tuple[_Plan, bool]:
    """The grouped plan, or the masked dense one where grouping saves no arithmetic."""
    out_channels, in_channels = support.shape
    plan = _class_plan(support, period, layout)
    if plan.groups * plan.n_out * plan.n_in >= out_channels * in_channels and plan.groups > 1:
        return _dense_plan(support), True
    return plan, False


@dataclass(frozen=True)
class _Moves:
    """Which channel moves one part's forward needs."""
    in_identity: bool   # the grouped input order is the channel order
    out_identity: bool  # the grouped output rows are the filter order
    in_pad: bool        # a padding slot reads a zero channel
    out_pad: bool       # some filter takes nothing from this part


class SSCConv2d(nn.Module):
    """A conv whose filters follow the SSC pattern (module docstring); compact parameters.

    ``weight_full``: (entries, kH, kW), the full kernels; ``weight_pointwise``: (entries,), the
    centre taps; both in the order of the grouped weights they fill.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 period_full: int = 1, period_pointwise: int = 0, *, dilation=1,
                 bias: bool = True, layout: str = "shifted", device=None, dtype=None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"unknown SSC layout {layout!r}; choose {' or '.join(LAYOUTS)}")
        if period_full < 0 or period_pointwise < 0:
            raise ValueError(f"SSC periods must be >= 0 (0 = none), got {period_full}, "
                             f"{period_pointwise}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.period_full, self.period_pointwise, self.layout = period_full, period_pointwise, layout
        pattern = pattern_matrix(in_channels, out_channels, period_full, period_pointwise, layout)
        self.register_buffer("pattern", pattern, persistent=False)
        full, point = pattern == FULL, pattern == POINTWISE
        if bool(point.any()) and any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"pointwise SSC kernels need an odd kernel size (a centre tap), got "
                             f"{self.kernel_size}; use period_pointwise=0")
        factory = {"device": device, "dtype": dtype}
        kh, kw = self.kernel_size
        self.full_plan, self.full_masked = (_plan_for(full, period_full, layout)
                                            if bool(full.any()) else (None, False))
        # The 1×1 part reuses the full part's channel order when it spans all channels in one
        # group (P_p = 1) and the full part moves every channel: one permutation for both.
        self.fused = (self.full_plan is not None and bool(point.any()) and period_pointwise == 1
                      and not bool((self.full_plan.row_of_filter
                                    == self.full_plan.groups * self.full_plan.n_out).any())
                      and bool(torch.isin(torch.arange(in_channels),
                                          self.full_plan.in_index).all()))
        if not bool(point.any()):
            self.point_plan, self.point_masked = None, False
        elif self.fused:
            fp = self.full_plan
            column = torch.full((in_channels,), -1, dtype=torch.long)
            real = fp.in_index < in_channels
            column[fp.in_index[real]] = torch.nonzero(real).flatten()
            # one group: rows = the full part's rows, columns = its input slots
            self.point_plan = _entries_plan(point, 1, fp.in_index.numel(), fp.groups * fp.n_out,
                                            fp.in_index, fp.row_of_filter, column, in_channels)
            self.point_masked = False
        else:
            self.point_plan, self.point_masked = _plan_for(point, max(period_pointwise, 1), layout)
        n_full = 0 if self.full_plan is None else self.full_plan.slots.numel()
        n_point = 0 if self.point_plan is None else self.point_plan.slots.numel()
        self.weight_full = nn.Parameter(torch.empty(n_full, kh, kw, **factory))
        self.weight_pointwise = nn.Parameter(torch.empty(n_point, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        for prefix, plan in (("full", self.full_plan), ("point", self.point_plan)):
            if plan is None:
                continue
            # index tensors move with .to(device) as non-persistent buffers
            self.register_buffer(f"_{prefix}_in_index", plan.in_index, persistent=False)
            self.register_buffer(f"_{prefix}_out_index", plan.row_of_filter, persistent=False)
            self.register_buffer(f"_{prefix}_slots", plan.slots, persistent=False)
            self.register_buffer(f"_{prefix}_dense_pos", plan.dense_pos, persistent=False)
            # filter of each grouped output row (C_out = a padding row: bias 0)
            rows = plan.groups * plan.n_out
            filter_of_row = torch.full((rows,), out_channels, dtype=torch.long)
            placed = plan.row_of_filter < rows
            filter_of_row[plan.row_of_filter[placed]] = torch.nonzero(placed).flatten()
            self.register_buffer(f"_{prefix}_bias_index", filter_of_row, persistent=False)
        # Which channel moves a forward needs, decided once so it never inspects indices.
        self._full_moves = self._moves(self.full_plan)
        self._point_moves = self._moves(self.point_plan)
        self.reset_parameters(generator)

    # ----- bookkeeping

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, period_full={self.period_full}, "
                f"period_pointwise={self.period_pointwise}, layout={self.layout}, "
                f"kind={self.kind}, params={self.weight_params}/{self.dense_weight_params}")

    @property
    def weight_params(self) -> int:
        """Weights actually stored (the pattern's entries)."""
        return self.weight_full.numel() + self.weight_pointwise.numel()

    @property
    def dense_weight_params(self) -> int:
        kh, kw = self.kernel_size
        return self.out_channels * self.in_channels * kh * kw

    def needed_flops(self, output: torch.Tensor) -> int:
        """FLOPs of this layer for ``output`` (N, C_out, H', W'): one multiply-add per stored
        weight and output position, 2 · weight_params · N · H' · W', as a dense conv's count
        but over the pattern's entries only. The fast form also multiplies stored zeros (the
        1×1 part's cells under full kernels, channels padded into equal groups); those are not
        work the layer needs, so ``pruning.metrics.flops`` counts this figure instead."""
        n, _, h, w = output.shape
        return 2 * self.weight_params * n * h * w

    @property
    def kind(self) -> str:
        """depthwise / group / pointwise / dense / mixed / empty."""
        has_full = self.weight_full.numel() > 0
        has_point = self.weight_pointwise.numel() > 0
        if has_full and has_point:
            return "mixed"
        if has_point:
            return "pointwise"
        if not has_full:
            return "empty"
        if bool((self.pattern == FULL).all()):
            return "dense"
        if (self.in_channels == self.out_channels
                and torch.equal(self.pattern == FULL, torch.eye(self.in_channels, dtype=torch.bool,
                                                                device=self.pattern.device))):
            return "depthwise"
        return "group"

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's conv initialisation (uniform ±1/√fan_in) with the pattern's mean fan-in."""
        fan_in = max(self.weight_params / max(self.out_channels, 1), 1.0)
        bound = 1.0 / math.sqrt(fan_in)
        for param in (self.weight_full, self.weight_pointwise, self.bias):
            if param is not None and param.numel():
                nn.init.uniform_(param, -bound, bound, generator=generator)

    # ----- weights in other forms

    def _grouped_weight(self, prefix: str, plan: _Plan, values: torch.Tensor) -> torch.Tensor:
        """(G·n_out, n_in, kH, kW) grouped weight filled from the compact ``values``."""
        rows = plan.groups * plan.n_out
        cells = rows * plan.n_in
        tail = values.shape[1:]
        if values.shape[0] == cells:  # no padding, no holes: the slots are 0..cells−1 in order
            return values.reshape(rows, plan.n_in, *tail) if tail else values.reshape(
                rows, plan.n_in, 1, 1)
        slots = getattr(self, f"_{prefix}_slots")
        grouped = values.new_zeros((cells, *tail)).index_copy(0, slots, values)
        return grouped.reshape(rows, plan.n_in, *(tail or (1, 1)))

    def dense_equivalent_weight(self) -> torch.Tensor:
        """(C_out, C_in, kH, kW): the pattern's weights with zeros elsewhere."""
        kh, kw = self.kernel_size
        cells = self.out_channels * self.in_channels
        flat = self.weight_full.new_zeros(cells, kh, kw)
        if self.full_plan is not None:
            flat = flat.index_copy(0, self._full_dense_pos, self.weight_full)
        if self.point_plan is not None:
            # full and pointwise entries never share an (f, c) cell, so the two parts add up
            centre = self.weight_pointwise.new_zeros(cells).index_copy(
                0, self._point_dense_pos, self.weight_pointwise)
            tap = self.weight_pointwise.new_zeros(kh, kw)
            tap[kh // 2, kw // 2] = 1.0
            flat = flat + centre.view(cells, 1, 1) * tap
        return flat.view(self.out_channels, self.in_channels, kh, kw)

    @torch.no_grad()
    def load_dense_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Take the pattern's entries from a dense (C_out, C_in, kH, kW) weight (rest ignored)."""
        kh, kw = self.kernel_size
        flat = weight.reshape(self.out_channels * self.in_channels, kh, kw)
        if self.full_plan is not None:
            self.weight_full.copy_(flat[self._full_dense_pos])
        if self.point_plan is not None:
            self.weight_pointwise.copy_(flat[self._point_dense_pos, kh // 2, kw // 2])
        if bias is not None and self.bias is not None:
            self.bias.copy_(bias)

    # ----- forward

    def _centre(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Input and padding that make a 1×1 conv read the K×K conv's centre taps."""
        pads = []
        for dim, (k, p, d) in enumerate(zip(self.kernel_size, self.padding, self.dilation)):
            pad = p - (k // 2) * d
            if pad < 0:  # an unpadded K×K conv never centres on the border pixels: crop them
                x = x.narrow(2 + dim, -pad, x.shape[2 + dim] + 2 * pad)
                pad = 0
            pads.append(pad)
        return x, tuple(pads)

    @staticmethod
    def _gather_in(x: torch.Tensor, index: torch.Tensor, moves: _Moves) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, G·n_in, H, W) in class order; slot C_in reads zeros."""
        if moves.in_identity:
            return x
        if moves.in_pad:
            x = F.pad(x, (0, 0, 0, 0, 0, 1))  # one zero channel for the padding slots
        return x.index_select(1, index)

    @staticmethod
    def _scatter_out(y: torch.Tensor, index: torch.Tensor, moves: _Moves) -> torch.Tensor:
        """(N, G·n_out, H, W) in class order -> (N, C_out, H, W) in filter order."""
        if moves.out_identity:
            return y
        if moves.out_pad:
            y = F.pad(y, (0, 0, 0, 0, 0, 1))  # filters without this part read a zero channel
        return y.index_select(1, index)

    def _moves(self, plan: _Plan | None) -> _Moves:
        if plan is None:
            return _Moves(True, True, False, False)
        in_identity = (plan.in_index.numel() == self.in_channels
                       and torch.equal(plan.in_index, torch.arange(self.in_channels)))
        rows = plan.groups * plan.n_out
        out_identity = (rows == self.out_channels
                        and torch.equal(plan.row_of_filter, torch.arange(self.out_channels)))
        return _Moves(in_identity, out_identity, bool((plan.in_index == self.in_channels).any()),
                      bool((plan.row_of_filter == rows).any()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H', W'), H' as nn.Conv2d with the same settings."""
        # The bias rides in the last conv computed (rows in that conv's order), so no separate
        # pass over the output adds it, unless that part leaves some filter out entirely.
        last = "point" if self.point_plan is not None else "full"
        late_bias = self.bias is not None and (self._point_moves if last == "point"
                                               else self._full_moves).out_pad
        y = None
        if self.full_plan is not None:
            plan, moves = self.full_plan, self._full_moves
            xp = self._gather_in(x, self._full_in_index, moves)       # (N, G·n_in, H, W)
            w = self._grouped_weight("full", plan, self.weight_full)  # (G·n_out, n_in, kH, kW)
            bias = self._row_bias("full", moves) if last == "full" and not late_bias else None
            y = F.conv2d(xp, w, bias, self.stride, self.padding, self.dilation,
                         plan.groups)                                 # (N, G·n_out, H', W')
            if self.fused:  # the 1×1 part over the same permuted channels, rows in class order
                wp = self._grouped_weight("point", self.point_plan, self.weight_pointwise)
                xc, pad = self._centre(xp)
                y = y + F.conv2d(xc, wp, self._row_bias("point", moves), self.stride, pad)
            y = self._scatter_out(y, self._full_out_index, moves)     # (N, C_out, H', W')
        if self.point_plan is not None and not self.fused:
            plan, moves = self.point_plan, self._point_moves
            xq = self._gather_in(x, self._point_in_index, moves)
            wp = self._grouped_weight("point", plan, self.weight_pointwise)  # (G·n_out, n_in,1,1)
            xc, pad = self._centre(xq)
            bias = None if late_bias else self._row_bias("point", moves)
            z = F.conv2d(xc, wp, bias, self.stride, pad, 1, plan.groups)  # (N, G·n_out, H', W')
            z = self._scatter_out(z, self._point_out_index, moves)    # (N, C_out, H', W')
            y = z if y is None else y + z
        if y is None:  # an empty pattern: zeros (plus the bias) of the right shape
            return self.masked_forward(x)
        if late_bias:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def _row_bias(self, prefix: str, moves: _Moves) -> torch.Tensor | None:
        """The bias in the grouped output rows' order of part ``prefix`` (None without bias)."""
        if self.bias is None or moves.out_identity:
            return self.bias
        index = getattr(self, f"_{prefix}_bias_index")
        return F.pad(self.bias, (0, 1)).index_select(0, index)  # padding rows get 0

    def masked_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer as a dense conv with the dense-equivalent (masked) weight."""
        return F.conv2d(x, self.dense_equivalent_weight(), self.bias, self.stride, self.padding,
                        self.dilation)


# ---------------------------------------------------------------------------------------------
# Choosing periods and converting a model


@dataclass(frozen=True)
class PeriodOption:
    period_full: int
    period_pointwise: int
    params: int        # weights of the layer with these periods
    density: float     # params / dense weights


def period_options(in_channels: int, out_channels: int, kernel_size) -> list[PeriodOption]:
    """The periods ``to_ssc`` chooses from for one layer, densest first.

    P_k runs over the divisors of gcd(C_in, C_out), so every class has the same size and the
    grouped conv needs no padding (P_k = 1: dense; P_k = C_in = C_out: depthwise); each P_k > 1
    comes without and with pointwise kernels on all other channels (P_p = 0 / 1, HetConv), and
    P_k = 0, P_p = 1 is the pointwise conv. 1×1 layers have no separate pointwise kernels.
    """
    kh, kw = _pair(kernel_size)
    taps, cells = kh * kw, in_channels * out_channels
    common = math.gcd(in_channels, out_channels)
    options = []
    for pk in (d for d in range(1, common + 1) if common % d == 0):
        full = cells // pk
        options.append(PeriodOption(pk, 0, full * taps, full / cells))
        if taps > 1 and pk > 1 and kh % 2 and kw % 2:
            params = full * taps + (cells - full)
            options.append(PeriodOption(pk, 1, params, params / (cells * taps)))
    if taps > 1 and kh % 2 and kw % 2:
        options.append(PeriodOption(0, 1, cells, 1.0 / taps))
    return sorted(options, key=lambda o: (-o.params, o.period_full))


def _convertible(model: nn.Module, include_stem: bool) -> list[tuple[str, nn.Conv2d]]:
    """The convs SSC replaces: plain Conv2d (groups = 1, zero padding) except the last layer and,
    unless ``include_stem``, the first."""
    layers = [(key[:-len(".weight")], module)
              for key, module in prunable_layers(model, include_first_last=True).items()]
    chosen = []
    for i, (name, module) in enumerate(layers):
        if i == len(layers) - 1 or (i == 0 and not include_stem):
            continue
        if (type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
                and not isinstance(module.padding, str)):
            chosen.append((name, module))
    return chosen


def choose_periods(layers: list[tuple[int, int, tuple[int, int]]], budget: int
                   ) -> list[PeriodOption]:
    """Per layer (C_in, C_out, kernel), periods whose total weights come as close to ``budget``
    as the options allow without exceeding it (the sparsest options if nothing fits).

    Every layer first takes its densest option not above a common density threshold, the
    largest threshold that fits; then the remaining budget is filled greedily, each time moving
    the layer whose next denser option adds the most weights that still fit.
    """
    options = [period_options(cin, cout, k) for cin, cout, k in layers]  # densest first
    thresholds = sorted({o.density for opts in options for o in opts}, reverse=True)

    def pick(threshold: float) -> list[int]:
        return [next((i for i, o in enumerate(opts) if o.density <= threshold + 1e-12),
                     len(opts) - 1) for opts in options]

    chosen = pick(thresholds[-1]) if thresholds else []
    for threshold in thresholds:
        candidate = pick(threshold)
        if sum(options[l][i].params for l, i in enumerate(candidate)) <= budget:
            chosen = candidate
            break
    total = sum(options[l][i].params for l, i in enumerate(chosen))
    while True:
        steps = [(options[l][i - 1].params - options[l][i].params, l)
                 for l, i in enumerate(chosen) if i > 0]
        steps = [(grow, l) for grow, l in steps if total + grow <= budget]
        if not steps:
            break
        grow, layer = max(steps)
        chosen[layer] -= 1
        total += grow
    return [options[l][i] for l, i in enumerate(chosen)]


def to_ssc(model: nn.Module, density: float | None = None, *, param_budget: int | None = None,
           period_full: int = -1, period_pointwise: int = 1, layout: str = "shifted",
           include_stem: bool = False, generator: torch.Generator | None = None) -> nn.Module:
    """Replace the model's prunable convs by freshly initialised SSCConv2d layers, in place.

    Either fixed periods for every layer (``period_full >= 0``, with ``period_pointwise``), or
    periods chosen per layer so the replaced convs keep ``density`` of their weights (or
    ``param_budget`` weights in all). Returns the model.
    """
    layers = _convertible(model, include_stem)
    if period_full >= 0:
        picked = [(period_full, period_pointwise) for _ in layers]
    else:
        dense = sum(m.weight.numel() for _, m in layers)
        if param_budget is None:
            if density is None or not 0.0 < density <= 1.0:
                raise ValueError(f"SSC density must be in (0, 1], got {density}")
            param_budget = int(round(density * dense))
        chosen = choose_periods([(m.in_channels, m.out_channels, m.kernel_size)
                                 for _, m in layers], param_budget)
        picked = [(o.period_full, o.period_pointwise) for o in chosen]
    for (name, conv), (pk, pp) in zip(layers, picked):
        ssc = SSCConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                        conv.padding, pk, pp, dilation=conv.dilation, bias=conv.bias is not None,
                        layout=layout, device=conv.weight.device, dtype=conv.weight.dtype,
                        generator=generator)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, ssc)
    return model


def ssc_layers(model: nn.Module) -> list[tuple[str, SSCConv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SSCConv2d)]


def pattern_payload(name: str, layer: SSCConv2d) -> dict[str, Any]:
    """The "ssc_pattern" trace of one layer (the app draws ``pattern`` as a heatmap)."""
    preview = layer.pattern[:PATTERN_PREVIEW, :PATTERN_PREVIEW].cpu().tolist()
    return {"layer": name, "in": layer.in_channels, "out": layer.out_channels,
            "kernel": list(layer.kernel_size), "period_full": layer.period_full,
            "period_pointwise": layer.period_pointwise, "layout": layer.layout,
            "kind": layer.kind, "params": layer.weight_params,
            "dense_params": layer.dense_weight_params,
            "masked_fallback": bool(layer.full_masked or layer.point_masked),
            "pattern": preview}


# ---------------------------------------------------------------------------------------------
# The registered method

SSC_PATTERN = TraceKind("ssc_pattern", {
    "layer": str, "in": int, "out": int, "kernel": list[int], "period_full": int,
    "period_pointwise": int, "layout": str, "kind": str, "params": int, "dense_params": int,
    "masked_fallback": bool, "pattern": list[list[Any]]},
    "one replaced conv, written before training: its periods, layout, weights and the top-left "
    "filters × channels of its kernel pattern")


@dataclass(frozen=True)
class SscExtras:
    """SSC's own results (the run summary's ``extras``)."""
    conv_params_dense: int       # weights of the convs it replaced
    conv_params: int             # their weights as SSC convs
    density_target: float | None  # asked for (None when periods were fixed)
    density: float               # conv_params / conv_params_dense
    layers: int                  # convs replaced
    kinds: dict[str, int]        # replaced convs per kind of SSC layer


@dataclass(frozen=True)
class SscConfig:
    density: float = setting(0.0, label="density",
                             help="weights kept in the replaced convolutions; 0 = 1 − the run's "
                                  "target sparsity", bounds=Bounds(0, 1), step=0.05)
    layout: Literal["shifted", "blocked"] = setting(
        "shifted", label="kernel layout", help="where each filter's full kernels sit",
        labels={"shifted": "shifted (HetConv, (c − f) mod P)",
                "blocked": "blocked (PyTorch groups)"})
    period_full: int = setting(-1, label="full-kernel period P_k",
                               help="-1 = chosen per layer from the density; >= 0: fixed P_k",
                               bounds=Bounds(-1, None))
    period_pointwise: int = setting(1, label="pointwise period P_p",
                                    help="fixed P_p (with a fixed P_k); 0 = no pointwise kernels",
                                    bounds=Bounds(0, None))
    include_stem: bool = setting(False, label="replace the first convolution too",
                                 help="also replace the stem convolution")

    def __post_init__(self):
        if not 0.0 <= self.density <= 1.0:
            raise ValueError(f"density must be in [0, 1] (0 = 1 − sparsity), got {self.density}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be {' or '.join(LAYOUTS)}, got {self.layout!r}")
        if self.period_full < -1 or self.period_pointwise < 0:
            raise ValueError(f"period_full must be >= -1 (-1 = from the density) and "
                             f"period_pointwise >= 0, got {self.period_full}, "
                             f"{self.period_pointwise}")
        if self.period_full == 0 and self.period_pointwise == 0:
            raise ValueError("period_full=0 with period_pointwise=0 leaves every kernel empty; "
                             "use period_pointwise=1 for a pointwise conv")


def _density(cfg: SscConfig, config: RunConfig) -> float:
    return cfg.density if cfg.density > 0 else 1.0 - config.sparsity


def convert(model: nn.Module, cfg: SscConfig, config: RunConfig) -> nn.Module:
    """``to_ssc`` as a run does it: the run's settings, seeded initialisation."""
    generator = torch.Generator().manual_seed(config.seed * 1000003 + 7)
    if not _convertible(model, cfg.include_stem):
        raise ConfigError(f"SSC found no convolution to replace in model {config.model!r} "
                          f"(the stem and the classifier are kept); choose a CNN")
    on = next(model.parameters()).device
    model.cpu()  # the generator lives on the CPU: initialise there, then move back
    to_ssc(model, _density(cfg, config), period_full=cfg.period_full,
           period_pointwise=cfg.period_pointwise, layout=cfg.layout,
           include_stem=cfg.include_stem, generator=generator)
    return model.to(on)


@METHODS.register("ssc", config=SscConfig, description=DESCRIPTION)
class Ssc(Method):
    @classmethod
    def reads_target_sparsity(cls, config, method_config) -> bool:
        return method_config.density <= 0

    @classmethod
    def target_text(cls, config, method_config) -> str:
        if method_config.density > 0:  # the density setting overrides the target sparsity
            return f"density {method_config.density:g} of the replaced convolutions"
        return f"density {1.0 - config.sparsity:g} (1 − {percent(config.sparsity)} target)"

    description = DESCRIPTION
    changes_architecture = True
    extras = SscExtras
    traces = (SSC_PATTERN,)

    @classmethod
    def check_config(cls, config: RunConfig, method_config: Any) -> None:
        """SSC replaces convolutions: refuse a model without any before a run is written."""
        from pruning.data import dataset_shape  # late: keeps this module light to import
        from pruning.models import build_model

        channels, size, classes = dataset_shape(config)
        model = build_model(config, channels, classes, size)
        if not _convertible(model, (method_config or SscConfig()).include_stem):
            raise ConfigError(f"SSC found no convolution to replace in model {config.model!r} "
                              f"(the stem and the classifier are kept); choose a CNN such as "
                              f"small_cnn, lenet5 or resnet20")

    def run(self, model: nn.Module, ctx) -> MethodResult:
        cfg: SscConfig = self.method_config or SscConfig()
        config = ctx.config
        ctx.total_epochs = config.epochs
        model.to(ctx.device)
        conv_dense = sum(m.weight.numel() for _, m in _convertible(model, cfg.include_stem))
        convert(model, cfg, config)
        layers = ssc_layers(model)
        for name, layer in layers:
            ctx.recorder.trace(SSC_PATTERN.name, ctx.steps_done, pattern_payload(name, layer))
        conv_ssc = sum(layer.weight_params for _, layer in layers)
        fit(model, ctx, epochs=config.epochs, phase="train")
        kinds: dict[str, int] = {}
        for _, layer in layers:
            kinds[layer.kind] = kinds.get(layer.kind, 0) + 1
        # parameters, FLOPs and accuracy of the SSC model are the run summary's own
        extras = SscExtras(
            conv_params_dense=conv_dense, conv_params=conv_ssc,
            density_target=_density(cfg, config) if cfg.period_full < 0 else None,
            density=conv_ssc / max(conv_dense, 1), layers=len(layers), kinds=kinds)
        return MethodResult(model, None, dataclasses.asdict(extras))


# ---------------------------------------------------------------------------------------------
# Comparison presets and timing


BASELINES = ("random", "snip", "grasp", "synflow")
TIMING_ROUND = 5  # consecutive calls of one form per timing round


def ssc_baseline_configs(base: RunConfig) -> list[RunConfig]:
    """The sweep comparing SSC with pruning at initialisation at the same parameter count.

    First the SSC run (``base`` with method ``ssc``; its method_params kept if it already was
    one), then random, SNIP, GraSP and SynFlow pruned once at initialisation (one_shot, window
    start 0, unstructured) at the sparsity of the prunable weights that removes exactly as many
    parameters as SSC does from the same model.
    """
    from pruning.data import dataset_shape  # late: keeps this module light to import
    from pruning.models import build_model

    ssc_config = base if base.method == "ssc" else base.replace(method="ssc", method_params={})
    cfg = method_config(ssc_config) or SscConfig()
    channels, size, classes = dataset_shape(base)
    model = build_model(base, channels, classes, size)
    dense_total = param_counts(model, None)["params"]
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    convert(model, cfg, ssc_config)
    removed = dense_total - param_counts(model, None)["params"]
    sparsity = removed / max(prunable, 1)
    if not 0.0 < sparsity < 1.0:
        raise ConfigError(
            f"SSC removes {removed} of {prunable} prunable weights of {base.model}; no pruning-at-"
            f"init baseline can match that; choose another density")
    baselines = [base.replace(method=name, method_params={}, schedule="one_shot",
                              window_start=0.0, window_end=0.0, sparsity=sparsity,
                              initial_sparsity=0.0, granularity="unstructured",
                              prune_first_last=False)
                 for name in BASELINES]
    return [ssc_config] + baselines


def ssc_forward_vs_masked(in_channels: int = 64, out_channels: int = 64, kernel_size: int = 3,
                          image_size: int = 16, batch_size: int = 32, density: float = 0.5,
                          period_full: int = -1, period_pointwise: int = 1,
                          layout: str = "shifted", repeats: int = 20,
                          device: str | torch.device = "cpu", seed: int = 0) -> dict[str, Any]:
    """Time one SSC layer's forward against the masked dense conv with the same weights.

    Periods come from ``density`` as in ``to_ssc`` unless ``period_full >= 0``. Inference
    (no_grad), each form in rounds of ``TIMING_ROUND`` consecutive calls (each in its steady
    state: calling the two in strict alternation costs both, and the grouped conv more, a cache
    penalty that says more about the benchmark than about the layer); rounds of the two forms
    alternate and each keeps its best per-call time. On the CPU the clock is this process's CPU
    time (summed over its threads), which other processes' load does not inflate; on CUDA it is
    wall time between synchronisations. Returns milliseconds and ``ratio`` = ssc / masked.
    """
    device = torch.device(device)
    if period_full < 0:
        budget = int(round(density * in_channels * out_channels * kernel_size ** 2))
        option = choose_periods([(in_channels, out_channels, (kernel_size, kernel_size))],
                                budget)[0]
        period_full, period_pointwise = option.period_full, option.period_pointwise
    generator = torch.Generator().manual_seed(seed)
    layer = SSCConv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, period_full,
                      period_pointwise, layout=layout, generator=generator).to(device).eval()
    x = torch.randn(batch_size, in_channels, image_size, image_size, generator=generator)
    x = x.to(device)

    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time

    def per_call(fn) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        start = clock()
        for _ in range(TIMING_ROUND):
            fn(x)
        if cuda:
            torch.cuda.synchronize(device)
        return (clock() - start) / TIMING_ROUND

    best_ssc = best_masked = math.inf
    with torch.no_grad():
        for _ in range(3):  # warm-up: allocator, kernel selection
            layer(x)
            layer.masked_forward(x)
        for _ in range(max(1, repeats // TIMING_ROUND)):
            best_ssc = min(best_ssc, per_call(layer))
            best_masked = min(best_masked, per_call(layer.masked_forward))
    return {"ssc_ms": best_ssc * 1e3, "masked_ms": best_masked * 1e3,
            "ratio": best_ssc / best_masked, "density": layer.weight_params /
            layer.dense_weight_params, "period_full": period_full,
            "period_pointwise": period_pointwise, "kind": layer.kind, "layout": layout,
            "params": layer.weight_params, "dense_params": layer.dense_weight_params,
            "shape": [batch_size, in_channels, image_size, image_size],
            "device": str(device), "threads": torch.get_num_threads(),
            "clock": "wall" if cuda else "process_cpu"}
