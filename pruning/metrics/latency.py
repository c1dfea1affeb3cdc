"""Device-aware latency measurement (METHODS.md §7).

Timing rules that make numbers comparable: warm-up calls first (allocator, kernel selection,
lazy initialisation), ``time.perf_counter`` around each call, a device synchronisation before
reading the clock on CUDA/MPS (kernels run asynchronously, so without it one would time the
launch, not the work), ``torch.inference_mode`` (no autograd bookkeeping), and the median and
90th percentile rather than the mean (one slow outlier from the OS should not move the figure).
Every result records device, dtype, threads and batch size, because a latency without them means
nothing. A time cap keeps a big model on a slow CPU from taking minutes: fewer repeats are taken
and the number actually taken is reported. Image models can be timed in either memory layout
(``MEMORY_FORMATS``: PyTorch's default NCHW or channels_last), which the speed lab and the
benchmark record beside every figure.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import torch
from torch import nn

DEFAULT_MAX_SECONDS = 5.0
MIN_REPEATS = 3


# "channels_first" is PyTorch's default NCHW layout (torch.contiguous_format).
MEMORY_FORMATS = {"channels_first": torch.contiguous_format, "channels_last": torch.channels_last}


def memory_format_of(name: str) -> torch.memory_format:
    """"channels_first" | "channels_last" → the torch memory format; ValueError otherwise."""
    try:
        return MEMORY_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown memory format {name!r}; choose one of "
                         f"{', '.join(MEMORY_FORMATS)}") from None


def to_memory_format(model: nn.Module, name: str) -> nn.Module:
    """``model`` with its 4-D weights in layout ``name`` (in place; returned for chaining)."""
    return model.to(memory_format=memory_format_of(name))


def input_in(x: torch.Tensor, name: str) -> torch.Tensor:
    """A 4-D image batch (B, C, H, W) in layout ``name``; other tensors unchanged."""
    return x.contiguous(memory_format=memory_format_of(name)) if x.dim() == 4 else x


def as_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so the clock measures the work, not the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device: torch.device) -> str:
    """"cpu", the CUDA device's name (e.g. "NVIDIA H100 80GB HBM3"), or the device type."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def summarise(times_ms: list[float]) -> dict[str, float]:
    """median, p90 and mean of a list of milliseconds."""
    ordered = sorted(times_ms)
    p90_index = min(len(ordered) - 1, max(0, int(round(0.9 * (len(ordered) - 1)))))
    return {"median_ms": float(statistics.median(ordered)), "p90_ms": float(ordered[p90_index]),
            "mean_ms": float(statistics.fmean(ordered))}


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device,
                     warmup: int = 3, repeats: int = 30,
                     max_seconds: float = DEFAULT_MAX_SECONDS) -> dict[str, list[float]]:
    """Time several callables round-robin, so slow phases of a noisy machine hit all of them.

    Returns milliseconds per call for each name; the order inside each round alternates so that
    no callable always runs right after the same neighbour (cache effects). Warm-up stops early
    once it has used half of ``max_seconds``, timing after at least ``MIN_REPEATS`` rounds once
    all of it is used.
    """
    names = list(fns)
    started = time.perf_counter()
    for _ in range(warmup):
        for name in names:
            fns[name]()
        synchronize(device)
        if time.perf_counter() - started > max_seconds / 2:
            break
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(max(1, repeats)):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            synchronize(device)
            t0 = time.perf_counter()
            fns[name]()
            synchronize(device)
            times[name].append((time.perf_counter() - t0) * 1000.0)
        if i + 1 >= MIN_REPEATS and time.perf_counter() - started > max_seconds:
            break
    return times


def _on(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``model`` itself when already on device/dtype, else a moved copy (the caller's is kept)."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == device or (device.index is None and t.device.type == device.type)
           for t in tensors) and all(t.dtype == dtype for t in tensors if t.is_floating_point()):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def measure_latency(model: nn.Module, input_shape: tuple, device: torch.device | str | None,
                    batch_size: int = 64, warmup: int = 5, repeats: int = 30,
                    dtype: torch.dtype = torch.float32,
                    max_seconds: float = DEFAULT_MAX_SECONDS) -> dict:
    """Forward latency of ``model`` (eval mode, inference mode) on a random batch.

    Returns median_ms, p90_ms, mean_ms, repeats (actually timed), batch_size, device (str),
    dtype (str), threads. The model's mode is restored; it is copied when it has to move.
    """
    return compare_latency({"model": model}, input_shape, device, batch_size, warmup, repeats,
                           dtype, max_seconds)["model"]


def compare_latency(models: dict[str, nn.Module], input_shape: tuple,
                    device: torch.device | str | None, batch_size: int = 64, warmup: int = 5,
                    repeats: int = 30, dtype: torch.dtype = torch.float32,
                    max_seconds: float = DEFAULT_MAX_SECONDS) -> dict[str, dict]:
    """``measure_latency`` of several models on the same batch, timed round-robin
    (``time_interleaved``) so that a busy spell of the machine slows all of them alike and their
    ratio stays fair. Returns one result dict per name."""
    device = as_device(device)
    targets = {name: _on(model, device, dtype) for name, model in models.items()}
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *input_shape), generator=generator).to(device=device, dtype=dtype)
    modes = {name: target.training for name, target in targets.items()}
    for target in targets.values():
        target.eval()
    try:
        with torch.inference_mode():
            times = time_interleaved({name: (lambda t=target: t(x))
                                      for name, target in targets.items()},
                                     device, warmup=warmup, repeats=repeats,
                                     max_seconds=max_seconds)
    finally:
        for name, target in targets.items():
            target.train(modes[name])
    return {name: {**summarise(times[name]), "repeats": len(times[name]),
                   "batch_size": int(batch_size), "device": device_name(device),
                   "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads()}
            for name in targets}
