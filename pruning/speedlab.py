"""The speed lab: "why isn't my pruned model faster?" answered by measurement (METHODS.md §7).

One pruned model is run in four forms on the machine at hand, across batch sizes:

1. dense baseline — the model with every weight, the reference;
2. masked dense — the mask applied as zeros: every zero is still multiplied, so the same FLOPs
   and, beyond noise, the same time (this is what most pruning code actually runs);
3. sparse kernels — layers swapped to CSR (CPU) or 2:4 semi-structured (recent NVIDIA GPUs) only
   where that measured faster (``pruning.sparse.sparsify``); CSR pays off only at high sparsity;
4. physically pruned — whole zero channels removed (``pruning.physical.compact_model``): a
   smaller dense model run by the same fast dense kernels; unstructured masks remove nothing.

Each row pairs the theoretical speed-up (FLOPs ratio) with the measured one and a sentence on
why they differ. ``csr_crossover`` measures where CSR starts to beat dense on this machine.
The forms of one batch size are timed interleaved, so a busy machine slows all of them alike.

Memory layout (``memory_format``): PyTorch stores images channels-first (NCHW) by default;
``"channels_last"`` (NHWC) puts each pixel's channels side by side, the layout oneDNN's CPU
convolutions and pooling prefer. FLOPs count only multiplications, but BatchNorm, ReLU and
pooling read and write every activation and do not get cheaper with FLOPs; NCHW max-pooling on
a CPU is especially slow. So a physically pruned conv net realises much less of its FLOPs
reduction in NCHW than in channels_last (vgg11, 75 % channels removed, 2 CPU threads: 0.45 vs
0.85 of the FLOPs ratio; ``python -m pruning bench``). The layout changes neither parameters
nor FLOPs nor outputs, only time.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from pruning.masks import Mask
from pruning.metrics.flops import count_flops, layer_flops
from pruning.metrics.latency import (as_device, device_name, input_in, memory_format_of,
                                     summarise, time_interleaved, to_memory_format)
from pruning.metrics.sparsity import param_counts
from pruning.physical import compact_model
from pruning.sparse import sparsify, to_csr

FORMS = ("dense", "masked", "sparse", "physical")
DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def _random_weight(out_features: int, in_features: int, sparsity: float,
                   generator: torch.Generator) -> torch.Tensor:
    """A (out, in) weight with exactly round(sparsity × numel) zeros at random places."""
    weight = torch.randn(out_features, in_features, generator=generator)
    n_zero = int(round(sparsity * weight.numel()))
    order = torch.randperm(weight.numel(), generator=generator)[:n_zero]
    weight.view(-1)[order] = 0.0
    return weight


def _interpolated_crossover(sparsities: list[float], speedups: list[float]) -> float | None:
    """Lowest sparsity from which CSR stays faster (speed-up > 1), linearly interpolated
    between the last measured point where it lost and the first where it won."""
    winning_from = None
    for i in range(len(sparsities) - 1, -1, -1):
        if speedups[i] > 1.0:
            winning_from = i
        else:
            break
    if winning_from is None:
        return None
    if winning_from == 0:
        return sparsities[0]
    s0, s1 = sparsities[winning_from - 1], sparsities[winning_from]
    v0, v1 = speedups[winning_from - 1], speedups[winning_from]
    return s0 + (1.0 - v0) * (s1 - s0) / (v1 - v0) if v1 != v0 else s1


def csr_crossover(in_features: int = 1024, out_features: int = 1024, batch_size: int = 64,
                  sparsities: tuple[float, ...] = DEFAULT_SPARSITIES,
                  device: torch.device | str | None = "cpu", max_seconds: float = 3.0,
                  seed: int = 0) -> dict:
    """Dense vs CSR time of one Linear layer at each sparsity, and where CSR starts to win.

    Returns in/out features, batch_size, device, threads, sparsities, dense_ms, csr_ms,
    speedup (dense/CSR), crossover (interpolated sparsity from which CSR stays faster, None if
    it never does) and a one-sentence explanation.
    """
    device = as_device(device)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, in_features, generator=generator).to(device)
    x_t = x.t().contiguous()  # (in, B): CSR wants a contiguous right-hand side
    dense_ms, csr_ms = [], []
    budget = max_seconds / max(len(sparsities), 1)
    for sparsity in sparsities:
        weight = _random_weight(out_features, in_features, sparsity, generator).to(device)
        csr = to_csr(weight)
        with torch.inference_mode():
            times = time_interleaved(
                {"dense": lambda: torch.nn.functional.linear(x, weight),
                 "csr": lambda: torch.sparse.mm(csr, x_t)},
                device, warmup=2, repeats=25, max_seconds=budget)
        dense_ms.append(summarise(times["dense"])["median_ms"])
        csr_ms.append(summarise(times["csr"])["median_ms"])
    speedups = [d / c for d, c in zip(dense_ms, csr_ms)]
    crossover = _interpolated_crossover(list(sparsities), speedups)
    where = (f"CSR beats dense only above ~{crossover:.0%} sparsity on this "
             f"{device_name(device)} ({torch.get_num_threads()} threads)" if crossover is not None
             else f"CSR never beat dense up to {max(sparsities):.0%} sparsity on this "
                  f"{device_name(device)}")
    return {"in_features": in_features, "out_features": out_features, "batch_size": batch_size,
            "device": device_name(device), "threads": torch.get_num_threads(),
            "sparsities": list(sparsities), "dense_ms": dense_ms, "csr_ms": csr_ms,
            "speedup": speedups, "crossover": crossover,
            "explanation": f"{where}: below it, storing an index per weight and gathering "
                           "scattered inputs costs more than the skipped multiplications save."}


def _sparse_flops(model: nn.Module, info: dict, input_shape: tuple) -> int:
    """FLOPs the sparse form executes: layers swapped to a sparse kernel at their density."""
    total, per_layer = layer_flops(model, input_shape)
    for row in info["layers"]:
        if row["chosen"] != "dense":
            flops = per_layer.get(f"{row['name']}.weight", 0)
            total -= flops * (1.0 - row["density"])
    return int(round(total))


def _explain_physical(flops_ratio: float, measured: float, batch_size: int,
                       memory_format: str | None, device: torch.device) -> str:
    """Why the physically pruned model is as fast as it is, in the layout it ran in."""
    if flops_ratio <= 1.005:  # nothing removed: unstructured zeros leave every channel alive
        return (f"no whole channel could be removed (scattered zeros leave every channel with "
                f"some weights), so this form is the dense model with the same FLOPs; its "
                f"{measured:.2f}x against dense is timing noise, not a speed-up.")
    head = (f"whole channels removed: a smaller dense model with {flops_ratio:.2f}x fewer "
            "FLOPs, run by the same fast dense kernels")
    if measured >= 0.8 * flops_ratio:
        layout = f" ({memory_format} layout)" if memory_format else ""
        return f"{head}, so the speed-up is real{layout}."
    small = " and fixed per-call costs weigh more at small batches" if batch_size <= 8 else ""
    if memory_format == "channels_first":
        hint = (" NCHW max-pooling is slow on CPUs; the channels_last layout usually realises "
                "much more of the FLOPs ratio there." if device.type == "cpu" else
                " The channels_last layout may realise more of it.")
        return (f"{head}, but only {measured / flops_ratio:.0%} of the FLOPs ratio is realised: "
                f"memory-bound ops (BatchNorm, ReLU, pooling) don't shrink with FLOPs{small}."
                + hint)
    return (f"{head}; {measured / flops_ratio:.0%} of the FLOPs ratio is realised: the rest "
            f"is memory-bound work (BatchNorm, ReLU, pooling) that FLOPs do not count{small}.")


def _explain(form: str, batch_size: int, info: dict | None, crossover: dict | None,
             flops_ratio: float, removed: bool, measured: float = 1.0,
             memory_format: str | None = None,
             device: torch.device = torch.device("cpu")) -> str:
    if form == "dense":
        return "the unpruned model: the baseline every speed-up here is measured against."
    if form == "masked":
        return ("masked dense computes every zero: same FLOPs as dense, so any difference "
                "is noise.")
    if form == "physical":
        if not removed:
            return ("no whole channel is zero, so nothing could be removed: this is the masked "
                    "dense model again (unstructured sparsity needs sparse kernels).")
        return _explain_physical(flops_ratio, measured, batch_size, memory_format, device)
    chosen = [row for row in info["layers"] if row["chosen"] != "dense"]
    if chosen:
        forms = sorted({row["chosen"] for row in chosen})
        return (f"{len(chosen)} of {len(info['layers'])} layers run as {'/'.join(forms)} "
                f"(measured faster there at batch {batch_size}); the rest stay dense.")
    semi = info["semi_structured"]
    tail = "" if semi["available"] else f" 2:4 kernels: {semi['reason']}."
    if crossover is not None and crossover.get("crossover") is not None:
        return (f"no layer ran faster as CSR at batch {batch_size}: CSR beats dense only above "
                f"~{crossover['crossover']:.0%} sparsity on this machine.{tail}")
    return (f"no layer ran faster in a sparse form at batch {batch_size}: dense BLAS kernels "
            f"win at this sparsity.{tail}")


def dense_forms(model: nn.Module, mask: Mask | None, input_shape: tuple,
                device: torch.device | str | None, dtype: torch.dtype = torch.float32,
                memory_format: str = "channels_first") -> tuple[dict[str, nn.Module], str | None]:
    """({"dense", "masked", "physical"}: eval-mode copies on ``device``, reason or None).

    The physical form is compacted in NCHW and then, like the others, put in
    ``memory_format`` when the input is an image; when the dependency graph cannot cut a
    coupling it is the masked model itself and the reason is returned. ``model`` is not changed.
    """
    memory_format_of(memory_format)  # unknown names fail before anything is built
    device = as_device(device)
    dense = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    masked = copy.deepcopy(dense)
    if mask is not None:
        mask.apply(masked)
    example = torch.zeros((1, *input_shape), device=device, dtype=dtype)
    try:
        physical, not_removed = compact_model(masked, None, example), None
    except RuntimeError as exc:  # a coupling the dependency graph cannot cut: say so, go on
        physical, not_removed = masked, str(exc)
    if len(input_shape) == 3:  # an image: 4-D weights in the chosen layout
        for form_model in {id(m): m for m in (dense, masked, physical)}.values():
            to_memory_format(form_model, memory_format)
    return {"dense": dense, "masked": masked, "physical": physical.eval()}, not_removed


def four_forms(model: nn.Module, mask: Mask | None, input_shape: tuple,
               device: torch.device | str | None, batch_sizes: tuple[int, ...] = (1, 8, 64, 256),
               dtype: torch.dtype = torch.float32, max_seconds: float = 6.0,
               crossover: dict | None = None,
               memory_format: str = "channels_first") -> list[dict]:
    """One row per (form, batch size): form, batch_size, params, flops, median_ms, p90_ms,
    repeats, device, dtype, threads, memory_format, theoretical_speedup, measured_speedup,
    explanation.

    ``params`` counts the parameters each form needs (for masked and sparse: all but the weights
    the mask removes),
    ``flops`` the FLOPs each form executes for one sample. ``max_seconds`` bounds the timing
    (split over batch sizes); ``crossover`` (from ``csr_crossover``) is only used in the
    explanations and measured quickly when not given and a CPU is used.

    ``memory_format`` ("channels_first", PyTorch's default, or "channels_last") is the layout
    of every form's 4-D weights and of the input when the input is an image
    (``len(input_shape) == 3``); other inputs have no layout and their rows record None. The
    sparse form runs in the same layout (its unfolded convs read any layout and hand their
    output on in the input's). Parameters, FLOPs and outputs do not depend on it, only time.
    """
    layout = memory_format if len(input_shape) == 3 else None
    device = as_device(device)
    built, not_removed = dense_forms(model, mask, input_shape, device, dtype, memory_format)
    dense, masked, physical = built["dense"], built["masked"], built["physical"]
    if crossover is None and device.type == "cpu":
        crossover = csr_crossover(512, 512, batch_size=64, sparsities=(0.8, 0.9, 0.95, 0.99),
                                  device=device, max_seconds=0.6)
    dense_flops = count_flops(dense, input_shape)
    total = param_counts(dense, None)["params"]
    under_mask = param_counts(dense, mask) if mask is not None else None
    removed_by_mask = (under_mask["prunable_params"] - under_mask["prunable_nonzero"]
                       if under_mask is not None else 0)
    counts = {"dense": total, "masked": total - removed_by_mask,
              "physical": param_counts(physical, None)["params"]}
    counts["sparse"] = counts["masked"]
    flops = {"dense": dense_flops, "masked": dense_flops,
             "physical": count_flops(physical, input_shape)}
    removed = counts["physical"] < counts["dense"]
    rows = []
    budget = max_seconds / max(len(batch_sizes), 1)
    generator = torch.Generator().manual_seed(0)
    for batch_size in batch_sizes:
        sparse, info = sparsify(masked, None, device, input_shape=input_shape,
                                batch_size=batch_size, repeats=8,
                                max_seconds_per_layer=budget / 8,
                                memory_format=layout or "channels_first")
        flops["sparse"] = _sparse_flops(masked, info, input_shape)
        x = torch.randn((batch_size, *input_shape), generator=generator).to(device=device,
                                                                             dtype=dtype)
        if layout is not None:
            x = input_in(x, layout)  # (B, C, H, W), strides of the chosen layout
        models = {"dense": dense, "masked": masked, "sparse": sparse, "physical": physical}
        with torch.inference_mode():
            times = time_interleaved({form: (lambda m=m: m(x)) for form, m in models.items()},
                                     device, warmup=2, repeats=30, max_seconds=budget / 2)
        stats = {form: summarise(t) for form, t in times.items()}
        for form in FORMS:
            flops_ratio = dense_flops / max(flops[form], 1)
            measured = stats["dense"]["median_ms"] / stats[form]["median_ms"]
            rows.append({
                "form": form, "batch_size": batch_size, "params": int(counts[form]),
                "flops": int(flops[form]), "median_ms": stats[form]["median_ms"],
                "p90_ms": stats[form]["p90_ms"], "repeats": len(times[form]),
                "device": device_name(device), "dtype": str(dtype).replace("torch.", ""),
                "threads": torch.get_num_threads(), "memory_format": layout,
                "theoretical_speedup": flops_ratio,
                "measured_speedup": measured,
                "explanation": (f"physical removal was not possible: {not_removed}"
                                if form == "physical" and not_removed else
                                _explain(form, batch_size, info if form == "sparse" else None,
                                         crossover, flops_ratio, removed, measured, layout,
                                         device)),
            })
    return rows
