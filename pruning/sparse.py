"""Sparse-kernel forms of pruned layers, used only where they measure faster (METHODS.md §7).

A masked model still multiplies by every zero. Two kinds of kernel can skip them:

- CSR (compressed sparse row, ``torch.sparse_csr``) on the CPU: a Linear is ``W_csr @ xᵀ``; a
  Conv2d becomes the same product after unfolding the input into columns (im2col). CSR stores an
  index per nonzero and gathers scattered inputs, so it loses to a dense BLAS kernel until the
  weights are very sparse (typically above ~90 % on a CPU; ``pruning.speedlab.csr_crossover``
  measures where on the machine at hand).
- 2:4 semi-structured sparsity (``torch.sparse.to_sparse_semi_structured``; Mishra et al.,
  "Accelerating Sparse Deep Neural Networks", arXiv 2104.08378) on NVIDIA GPUs with compute
  capability ≥ 8.0: at most 2 nonzeros in every group of 4 consecutive input weights, run by
  Sparse Tensor Cores at up to twice the dense rate.

``sparsify`` times each layer dense and in every form it can take, at the caller's batch size, and
swaps a layer only where a sparse form was measurably faster; ``info`` says per layer what was
chosen, the measured times and, where a form was not possible, why.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from pruning.masks import Mask
from pruning.metrics.latency import (as_device, input_in, memory_format_of, summarise,
                                     time_interleaved)

# A sparse form must beat dense by this fraction to be chosen: timing noise should not flip it.
MARGIN = 0.03
# Above this density CSR cannot win on any CPU we know; such layers are not timed.
MAX_CSR_DENSITY = 0.5
NO_GPU = "needs an NVIDIA GPU with compute capability ≥ 8.0; this machine has none"


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    """(out, in) dense → CSR, without the "beta" warning PyTorch prints on every conversion."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().contiguous().to_sparse_csr()


def is_two_four(weight: torch.Tensor) -> bool:
    """True when every group of 4 consecutive input weights has at most 2 nonzeros."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    if flat.shape[1] % 4:
        return False
    return bool(((flat.reshape(flat.shape[0], -1, 4) != 0).sum(dim=2) <= 2).all())


def semi_structured_support(device: torch.device | str | None) -> tuple[bool, str]:
    """(available, reason): can 2:4 semi-structured kernels run on ``device``?"""
    device = as_device(device)
    if not torch.cuda.is_available():
        return False, NO_GPU
    if device.type != "cuda":
        return False, f"runs on NVIDIA GPUs only; this measurement is on {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 0):
        return False, (f"needs compute capability ≥ 8.0; {torch.cuda.get_device_name(device)} "
                       f"has {major}.{minor}")
    probe = torch.tensor([1.0, 1.0, 0.0, 0.0], device=device).repeat(64, 16).half()
    try:
        _, backend = semi_structured(probe)
        F.linear(torch.randn(32, 64, device=device, dtype=torch.half), _)
    except Exception as exc:  # a PyTorch build without the kernels: say what it said
        return False, f"2:4 kernels failed on this GPU: {str(exc).splitlines()[0]}"
    return True, f"available ({backend} backend)"


def semi_structured(weight: torch.Tensor) -> tuple[torch.Tensor, str]:
    """(2:4 compressed weight, backend name); cuSPARSELt first, CUTLASS (which has float32)
    second. Raises RuntimeError with PyTorch's reason when neither accepts the weight."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS
    errors = []
    for cls in (SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS):
        if weight.dtype not in cls._DTYPE_SHAPE_CONSTRAINTS:
            errors.append(f"{cls.BACKEND}: no {str(weight.dtype).replace('torch.', '')} kernels")
            continue
        try:
            return cls.from_dense(weight.detach().contiguous()), cls.BACKEND
        except Exception as exc:
            errors.append(f"{cls.BACKEND}: {str(exc).splitlines()[0]}")
    raise RuntimeError("; ".join(errors))


def _product_t(weight: torch.Tensor, form: str, x_t: torch.Tensor) -> torch.Tensor:
    """weight(out, in) @ x_t(in, N) → (out, N) with a CSR or 2:4 weight.

    CSR wants a contiguous right-hand side: on a transposed view PyTorch takes a path that is
    ~100x slower, which would hide every gain.
    """
    if form == "csr":
        return torch.sparse.mm(weight, x_t.contiguous())
    return F.linear(x_t.t(), weight).t()


class SparseLinear(nn.Module):
    """A Linear whose weight is held in a sparse form ("csr" or "2:4")."""

    def __init__(self, layer: nn.Linear, form: str):
        super().__init__()
        self.form = form
        self.in_features, self.out_features = layer.in_features, layer.out_features
        weight = layer.weight.detach()
        self.register_buffer("weight", to_csr(weight) if form == "csr"
                             else semi_structured(weight)[0])
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # (N, in)
        y = _product_t(self.weight, self.form, flat.t()).t()  # (out, N) → (N, out)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class SparseConv2d(nn.Module):
    """A Conv2d (groups=1, zero padding) as im2col then a sparse matmul.

    x (B, C_in, H, W) → columns (B, K = C_in·kh·kw, L) → (K, B·L) → sparse product
    (C_out, B·L) → (B, C_out, H_out, W_out). ``unfold`` reads either memory layout; with
    ``channels_last`` the output is returned in that layout, as a dense conv with channels_last
    weights does, so the layers after it keep running in the layout the caller chose.
    """

    def __init__(self, layer: nn.Conv2d, form: str, channels_last: bool = False):
        super().__init__()
        self.form = form
        self.channels_last = channels_last
        self.out_channels = layer.out_channels
        self.kernel_size, self.stride = layer.kernel_size, layer.stride
        self.padding, self.dilation = layer.padding, layer.dilation
        weight = layer.weight.detach().reshape(layer.out_channels, -1)  # (C_out, C_in·kh·kw)
        self.register_buffer("weight", to_csr(weight) if form == "csr"
                             else semi_structured(weight)[0])
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        self.register_buffer("bias_map", getattr(layer, "bias_map", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        h_out = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) \
            // self.stride[0] + 1
        w_out = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) \
            // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, K, L)
        cols_t = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (K, B·L), contiguous
        y = _product_t(self.weight, self.form, cols_t)  # (C_out, B·L)
        y = y.reshape(self.out_channels, b, h_out * w_out).transpose(0, 1)  # (B, C_out, L)
        y = y.reshape(b, self.out_channels, h_out, w_out)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        if self.bias_map is not None:
            y = y + self.bias_map
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return y


def _why_not(layer: nn.Module, form: str, density: float, semi_ok: tuple[bool, str],
             dtype: torch.dtype) -> str | None:
    """None when ``layer`` can take ``form``; otherwise the reason it cannot."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            return "grouped/depthwise convolution: no sparse matmul form"
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            return "only zero padding with explicit sizes is unfolded"
    elif not isinstance(layer, nn.Linear):
        return f"{type(layer).__name__} has no sparse form here"
    if form == "csr":
        if density > MAX_CSR_DENSITY:
            return (f"too dense for CSR (density {density:.2f} > {MAX_CSR_DENSITY}); "
                    "not timed")
        return None
    if not semi_ok[0]:
        return semi_ok[1]
    if not is_two_four(layer.weight):
        return "weights are not 2:4 sparse (some group of 4 has more than 2 nonzeros)"
    try:
        semi_structured(layer.weight.detach().reshape(layer.weight.shape[0], -1).to(dtype))
    except RuntimeError as exc:
        return f"2:4 conversion refused: {exc}"
    return None


def _check_outputs(layer: nn.Module, candidate: nn.Module, x: torch.Tensor) -> str | None:
    """None when ``candidate`` runs and gives ``layer``'s outputs on ``x``, else why not.

    A kernel that a PyTorch build or a GPU lacks fails here, not in the middle of timing.
    """
    try:
        with torch.inference_mode():
            expected, got = layer(x), candidate(x)
    except Exception as exc:
        return f"{candidate.form} kernel failed here: {str(exc).splitlines()[0]}"
    tolerance = 1e-4 if expected.dtype in (torch.float32, torch.float64) else 1e-2
    error = float((got.float() - expected.float()).abs().max()) if got.shape == expected.shape \
        else float("inf")
    if error > tolerance * (1.0 + float(expected.abs().max())):
        return f"{candidate.form} outputs differ from dense (max error {error:.2g}); not used"
    return None


def _capture(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{module name: its input} for every Linear/Conv2d layer on the batch ``x``."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            handles.append(module.register_forward_pre_hook(
                lambda mod, args, name=name: seen.setdefault(name, args[0].detach())))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def sparsify(model: nn.Module, mask: Mask | None, device: torch.device | str | None,
             input_shape: tuple | None = None, batch_size: int = 64,
             forms: tuple[str, ...] | None = None, repeats: int = 15,
             max_seconds_per_layer: float = 0.5,
             memory_format: str = "channels_first") -> tuple[nn.Module, dict]:
    """A copy of ``model`` (mask applied) with layers swapped to a sparse form where faster.

    Each Linear/Conv2d layer is timed on its real input (from one forward pass of a random
    batch of ``batch_size`` and ``input_shape``), dense against each form it can take ("csr" on
    any device, "2:4" on a capable NVIDIA GPU), interleaved; the fastest form is kept when it
    beats dense by at least ``MARGIN``. Without ``input_shape`` it is read from a first Linear
    layer. ``memory_format`` ("channels_first" or "channels_last") is the layout of the copy's
    4-D weights and of the image batch its layers are timed on, so each layer is timed on the
    input it will see. Returns (model in eval mode, info) where info has device, batch_size, dtype,
    semi_structured (available, reason) and one row per layer: name, type, density, chosen,
    times_ms {form: median ms}, reasons {form: why it was not possible}.
    """
    device = as_device(device)
    sparse = copy.deepcopy(model).eval().to(device)
    if mask is not None:
        mask.apply(sparse)
    dtype = next(sparse.parameters()).dtype
    if input_shape is None:
        first = next(m for m in sparse.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        if not isinstance(first, nn.Linear):
            raise ValueError("sparsify needs input_shape for a model that starts with a conv")
        input_shape = (first.in_features,)
    semi_ok = semi_structured_support(device)
    forms = forms or (("csr", "2:4") if device.type == "cuda" else ("csr",))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *input_shape), generator=generator).to(device=device, dtype=dtype)
    layout = memory_format_of(memory_format)
    sparse.to(memory_format=layout)
    x = input_in(x, memory_format)  # (B, C, H, W) in the chosen layout
    inputs = _capture(sparse, x)
    rows = []
    for name, layer in list(sparse.named_modules()):
        if name not in inputs:
            continue
        weight = layer.weight.detach()
        density = float((weight != 0).sum()) / weight.numel()
        row = {"name": name, "type": type(layer).__name__, "density": density,
               "chosen": "dense", "times_ms": {}, "reasons": {}}
        candidates = {}
        for form in forms:
            reason = _why_not(layer, form, density, semi_ok, dtype)
            if reason is not None:
                row["reasons"][form] = reason
                continue
            candidate = (SparseLinear(layer, form) if isinstance(layer, nn.Linear) else
                         SparseConv2d(layer, form, channels_last=layout == torch.channels_last))
            reason = _check_outputs(layer, candidate, inputs[name])
            if reason is not None:
                row["reasons"][form] = reason
                continue
            candidates[form] = candidate
        if candidates:
            layer_input = inputs[name]
            calls = {"dense": lambda: layer(layer_input)}
            calls.update({form: (lambda m=m: m(layer_input)) for form, m in candidates.items()})
            with torch.inference_mode():
                times = time_interleaved(calls, device, warmup=2, repeats=repeats,
                                         max_seconds=max_seconds_per_layer)
            medians = {form: summarise(t)["median_ms"] for form, t in times.items()}
            row["times_ms"] = medians
            best = min(candidates, key=lambda form: medians[form])
            if medians[best] < (1.0 - MARGIN) * medians["dense"]:
                row["chosen"] = best
                _set_module(sparse, name, candidates[best])
        rows.append(row)
    info = {"device": str(device), "batch_size": batch_size,
            "dtype": str(dtype).replace("torch.", ""), "memory_format": memory_format,
            "semi_structured": {"available": semi_ok[0], "reason": semi_ok[1]},
            "layers": rows}
    return sparse, info
