"""Benchmarks: what pruning and this tool cost and buy, as one JSON (``python -m pruning bench``).

Every figure is a ratio of two things timed in the same run, interleaved (A, B, B, A, ...) and
summarised by medians, so a busy machine slows both sides alike and the ratio stays meaningful:

- ``masked_step_ratio``: a training step with the trainer's mask re-application
  (``ScheduledHooks._apply``: one in-place multiply per pruned weight) over a plain dense step,
  small_cnn on digits, batch 64;
- ``session_overhead_ratio``: the default session (``run_session``: pruning, per-epoch
  evaluation, store writes, final FLOPs/latency/compaction) over a minimal dense training loop of
  the same epochs on the same data, as the median of back-to-back pairs; ``details.session``
  adds the fastest-pair and CPU-time ratios (seconds-long runs on a shared machine move by
  ±10 %) and each part of the sessions' own ``time_breakdown_s`` as a fraction of the plain
  loop, i.e. where the overhead goes;
- ``details.pruning_step``: one re-pruning step along that session's schedule, the Pruner's
  per-step path against ranking every weight from scratch (same masks, checked at every step);
- ``channel_speedup_vs_flops``: measured CPU speed-up of the physically pruned model over its
  FLOPs reduction, for uniform channel pruning of 50 % and 75 % (1.0 = the speed-up the FLOPs
  promise is fully realised), with both models and the input in the ``channels_last`` (NHWC)
  memory layout, the layout one uses for CPU inference of conv nets; ``channel_memory_format``
  says so. The same is measured in PyTorch's default NCHW layout
  (``channel_speedup_vs_flops_channels_first``; both layouts under ``details.channel``): there
  BatchNorm, ReLU and especially max-pooling, memory-bound work that FLOPs do not count and that
  NCHW runs slowly on a CPU, take a large share of the pruned model's time, so much less of the
  FLOPs reduction is realised. Both models are timed in inference form, BatchNorm folded into
  the preceding convolution (``fold_batchnorm``; the FLOPs are those of the unfolded models):
  a folded BatchNorm costs no memory pass, and that pass weighs more in the narrow pruned model
  (on a 2-core CPU, 1 thread, 12 interleaved rounds of CPU time at 75 %: median 0.80 folded
  against 0.78 unfolded);
- ``csr_speedup``: dense / CSR time of a 1024×1024 Linear at batch 64 at 90, 95, 99 % sparsity;
- ``ssc_vs_masked_ratio``: an SSC convolution's forward over the masked dense conv with the same
  parameters (``pruning.methods.ssc``);
- ``sweep_parallel_ratio`` (only with ``--sweep``: it trains 24 default sessions, about two
  minutes on 2 cores, more than the other figures together): wall time of a 12-run sweep
  (4 schedules × 3 sparsities, default sessions) on a local Ray with 2 CPUs, Ray's start and
  shutdown included, over the same sweep run one after another in this process
  (``pruning.sweeps``). Not an interleaved ratio: the two sweeps run once each, one after the
  other, so it moves with the machine's other work more than the figures above.

Machine information (device, threads, torch, load average) is included: on a machine shared
with other work the absolute times move, the interleaved ratios much less.
"""
from __future__ import annotations

import copy
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pruning.config import RunConfig
from pruning.masks import Mask, prunable_layers
from pruning.metrics.flops import count_flops
from pruning.metrics.latency import (as_device, device_name, input_in, memory_format_of,
                                     time_interleaved, to_memory_format)

# Why NCHW realises less of channel pruning's FLOPs reduction than channels_last (JSON text).
LAYOUT_EXPLANATION = ("FLOPs count only conv/linear multiplications; BatchNorm, ReLU and "
                      "pooling are memory-bound and do not shrink with them, and NCHW "
                      "max-pooling is slow on CPUs, so channels_first realises less of the "
                      "FLOPs reduction than channels_last.")


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {"device": device_name(device), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def paired_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median of the per-round ratios: each round's two timings were taken back to back."""
    return float(statistics.median(a / b for a, b in zip(times[numerator], times[denominator])))


def magnitude_mask(model: nn.Module, sparsity: float) -> Mask:
    """Global magnitude mask over the default prunable weights at exactly ``sparsity``."""
    params = dict(model.named_parameters())
    names = list(prunable_layers(model))
    scores = torch.cat([params[n].detach().abs().flatten().cpu() for n in names])
    n_prune = int(round(sparsity * scores.numel()))
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[torch.argsort(scores)[:n_prune]] = False
    masks, start = {}, 0
    for name in names:
        n = params[name].numel()
        masks[name] = keep[start:start + n].reshape(params[name].shape)
        start += n
    return Mask(masks)


def channel_mask(model: nn.Module, fraction: float, include_first: bool = False) -> Mask:
    """Per prunable layer, drop the ``fraction`` of output channels with the smallest L1 norm
    (the first layer too with ``include_first``; never the classifier)."""
    masks = {}
    layers = prunable_layers(model, include_first_last=include_first)
    if include_first:
        layers = dict(list(layers.items())[:-1])
    for name, layer in layers.items():
        weight = layer.weight.detach()
        norms = weight.abs().reshape(weight.shape[0], -1).sum(dim=1).cpu()
        n_drop = min(int(round(fraction * weight.shape[0])), weight.shape[0] - 1)
        keep = torch.ones(weight.shape[0], dtype=torch.bool)
        keep[torch.argsort(norms)[:n_drop]] = False
        masks[name] = keep.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight).clone()
    return Mask(masks)


def _digits(config: RunConfig):
    from pruning.data import load_dataset
    return load_dataset(config)


def masked_step_ratio(device: torch.device, repeats: int = 200, max_seconds: float = 20.0,
                      sparsity: float = 0.9) -> dict[str, Any]:
    """Training step with the trainer's mask re-application / plain dense step."""
    from pruning.methods.scheduled import ScheduledHooks
    from pruning.models import build_model
    from pruning.training import make_optimizer

    config = RunConfig()
    bundle = _digits(config)
    dense = build_model(config, bundle.in_channels, bundle.num_classes, bundle.image_size)
    masked = copy.deepcopy(dense)
    dense.to(device).train()
    masked.to(device).train()
    # The trainer's own re-application code: ScheduledHooks._apply on cached device masks.
    hooks = ScheduledHooks(pruner=None, schedule=None, prune_every=1, first_batches=())
    hooks.params = dict(masked.named_parameters())
    hooks.current = magnitude_mask(masked, sparsity)
    hooks._cache(masked)
    hooks._apply()
    x, y = next(bundle.batches("train", 64, shuffle=True, generator=torch.Generator().manual_seed(0)))
    x, y = x.to(device), y.to(device)
    opt_dense = make_optimizer(dense.parameters(), config)
    opt_masked = make_optimizer(masked.parameters(), config)

    def step(model, optimizer, after=None):
        loss = F.cross_entropy(model(x), y)  # (B, classes) logits → scalar
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after is not None:
            after()

    times = time_interleaved({"dense": lambda: step(dense, opt_dense),
                              "masked": lambda: step(masked, opt_masked, hooks._apply)},
                             device, warmup=5, repeats=repeats, max_seconds=max_seconds)
    return {"ratio": paired_ratio(times, "masked", "dense"),
            "dense_ms": statistics.median(times["dense"]),
            "masked_ms": statistics.median(times["masked"]), "repeats": len(times["dense"]),
            "model": "small_cnn", "dataset": "digits", "batch_size": 64, "sparsity": sparsity}


def _plain_training(config: RunConfig, bundle, device: torch.device) -> None:
    """The minimal dense loop the session is compared with: same model, data, optimizer, epochs."""
    from pruning.models import build_model
    from pruning.training import make_optimizer

    model = build_model(config, bundle.in_channels, bundle.num_classes, bundle.image_size)
    model.to(device).train()
    optimizer = make_optimizer(model.parameters(), config)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        for x, y in bundle.batches("train", config.batch_size, shuffle=True, generator=generator):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def session_overhead_ratio(device: torch.device, repeats: int = 2,
                           config: RunConfig | None = None) -> dict[str, Any]:
    """Default session's wall time / minimal dense training loop of the same epochs (ABBA)."""
    from pruning.session import run_session
    from pruning.store import RunStore

    config = config or RunConfig(device=device.type)
    bundle = _digits(config)
    # A process's first run pays one-time work (torch.optim imports torch._dynamo when the first
    # optimizer is built: seconds; oneDNN's first kernels; scikit-learn): the app warms it when
    # it starts (pruning.warmup), so pay it before the clock starts, as overhead it is not.
    from pruning.warmup import warm_up

    warm_up(config)
    from pruning.models import build_model
    from pruning.session import choose_threads

    probe = build_model(config, bundle.in_channels, bundle.num_classes, bundle.image_size)
    threads = choose_threads(config, device, count_flops(
        probe, (bundle.in_channels, bundle.image_size, bundle.image_size)))
    session_s, plain_s, session_cpu, plain_cpu = [], [], [], []
    breakdowns: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home))

        def session():
            started, cpu_started = time.perf_counter(), time.process_time()
            run = run_session(config, store)
            session_s.append(time.perf_counter() - started)
            session_cpu.append(time.process_time() - cpu_started)
            if run.status != "done":
                raise RuntimeError(f"benchmark session ended {run.status}: {run.error}")
            breakdowns.append(run.summary.get("time_breakdown_s", {}))

        def plain():
            # Same CPU threads as the session picks for this model, so only overhead differs.
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                started, cpu_started = time.perf_counter(), time.process_time()
                _plain_training(config, bundle, device)
                plain_s.append(time.perf_counter() - started)
                plain_cpu.append(time.process_time() - cpu_started)
            finally:
                torch.set_num_threads(previous)

        for i in range(repeats):
            for fn in ((session, plain) if i % 2 == 0 else (plain, session)):
                fn()
    ratios = [s / p for s, p in zip(session_s, plain_s)]
    # Where the session's extra time goes, as fractions of the plain loop: the median over the
    # sessions of each part of the run's own time_breakdown_s.
    plain_median = statistics.median(plain_s)
    parts = {part: statistics.median(b.get(part, 0.0) for b in breakdowns) / plain_median
             for part in breakdowns[0] if part != "training"}
    return {"ratio": float(statistics.median(ratios)),
            "ratio_of_fastest": min(session_s) / min(plain_s),
            "cpu_time_ratio": statistics.median(s / p for s, p in zip(session_cpu, plain_cpu)),
            "session_s": statistics.median(session_s), "plain_s": plain_median,
            "overhead_parts_vs_plain": parts,
            "repeats": repeats, "threads": threads, "model": config.model, "dataset": config.dataset,
            "epochs": config.epochs, "method": config.method, "schedule": config.schedule,
            "note": "ratio: median of back-to-back (session, plain) pairs; ratio_of_fastest: "
                    "fastest session / fastest plain loop (noise from other work only adds "
                    "time); cpu_time_ratio: the same with this process's CPU time. "
                    "overhead_parts_vs_plain: each non-training part of the session's own "
                    "time_breakdown_s over the plain loop's time."}


def pruning_step(device: torch.device, config: RunConfig | None = None) -> dict[str, Any]:
    """Milliseconds of one re-pruning step along the default session's schedule: the Pruner's
    per-step path (``Pruner._prune_live``, the few weights a step removes) against ranking every
    weight from scratch (``granularity.select``), interleaved at every step on the same weights
    and mask. The two masks are compared at every step; a difference raises."""
    from pruning.methods.criteria import Pruner
    from pruning.methods.granularity import select
    from pruning.metrics.latency import synchronize
    from pruning.models import build_model
    from pruning.schedules import schedule_from_config

    config = config or RunConfig()
    bundle = _digits(config)
    torch.manual_seed(config.seed)
    model = build_model(config, bundle.in_channels, bundle.num_classes, bundle.image_size)
    model.to(device)
    schedule = schedule_from_config(config)
    pruner = Pruner("magnitude", scope="global", granularity="unstructured")
    total_steps = config.epochs * bundle.steps_per_epoch("train", config.batch_size)
    generator = torch.Generator().manual_seed(0)
    mask = pruner.initial_mask(model)
    per_step, full = [], []
    for step in range(1, total_steps + 1):
        with torch.no_grad():  # stand-in for an optimizer step: small moves of every weight
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator).to(device) * 1e-3)
        target = schedule(step / total_steps)
        synchronize(device)
        started = time.perf_counter()
        params = {name: p for name, p in model.named_parameters() if name in mask}
        alive = {name: mask[name].to(device) for name in mask}
        scores = {name: p.detach().abs() for name, p in params.items()}
        expected = select(scores, alive, target, scope="global", granularity="unstructured")
        expected = Mask({name: keep.cpu() for name, keep in expected.items()})
        synchronize(device)
        full.append((time.perf_counter() - started) * 1000.0)
        started = time.perf_counter()
        new = pruner(model, mask, target)
        synchronize(device)
        per_step.append((time.perf_counter() - started) * 1000.0)
        if not new.equals(expected):
            raise RuntimeError(f"per-step pruning differs from full ranking at step {step}")
        mask = new
        mask.apply(model)
    return {"per_step_ms": statistics.median(per_step), "full_ranking_ms": statistics.median(full),
            "ratio": statistics.median(a / b for a, b in zip(per_step, full)),
            "steps": total_steps, "prunable_weights": mask.total(), "final_sparsity": mask.sparsity(),
            "note": "magnitude, global unstructured, the default one-cycle schedule; median per "
                    "step; masks identical at every step"}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` (eval mode) with each BatchNorm that follows a convolution folded into it
    (``torch.fx``'s conv-BN fusion); the model itself if it cannot be traced."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model.eval())
    except Exception:  # a model torch.fx cannot trace is timed as it is
        return model


def channel_speedup_vs_flops(device: torch.device, fractions=(0.5, 0.75), batch_size: int = 64,
                             model_name: str = "vgg11", width: float = 1.0,
                             repeats: int = 20, max_seconds: float = 20.0,
                             include_first: bool = True,
                             memory_format: str = "channels_last",
                             fold_bn: bool = True) -> dict[str, Any]:
    """Measured speed-up of the physically channel-pruned model / its FLOPs reduction.

    Every conv layer loses ``fraction`` of its filters (smallest L1 norm; the classifier keeps
    its classes). With ``include_first=False`` the first conv keeps its full width, as in the
    sessions' default prunable set; its full-resolution feature maps then feed BatchNorm, ReLU
    and max-pooling at full size, work that FLOPs do not count, and the ratio drops.
    ``memory_format`` ("channels_last" or "channels_first") is the layout of both models and
    the input; models are compacted in NCHW and converted after (the layout changes no FLOPs).
    ``fold_bn`` times both models with BatchNorm folded into the convolutions (``fold_batchnorm``).
    Returns {fraction: ratio, "model", "batch_size", "memory_format", "details"}.
    """
    from pruning.models import MODELS
    from pruning.physical import compact_model

    memory_format_of(memory_format)  # unknown names fail before anything is built
    torch.manual_seed(0)
    input_shape = (3, 32, 32)
    dense = MODELS.get(model_name)(3, 10, 32, width).eval().to(device)
    example = torch.zeros((1, *input_shape), device=device)
    dense_flops = count_flops(dense, input_shape)
    x = torch.randn((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
    x = input_in(x.to(device), memory_format)  # (B, 3, 32, 32) in the chosen layout
    timed_dense = fold_batchnorm(copy.deepcopy(dense)) if fold_bn else copy.deepcopy(dense)
    laid_out = to_memory_format(timed_dense, memory_format)
    layers = "every conv layer" if include_first else "every conv layer but the first"
    result: dict[str, Any] = {"model": f"{model_name} (width {width}) on 3x32x32, {layers} "
                                       "channel-pruned", "batch_size": batch_size,
                              "memory_format": memory_format,
                              "batchnorm": "folded into the convolutions" if fold_bn else "as is",
                              "details": {}}
    for fraction in fractions:
        compact = compact_model(dense, channel_mask(dense, fraction, include_first), example)
        compact_flops = count_flops(compact, input_shape)
        if fold_bn:
            compact = fold_batchnorm(compact)
        to_memory_format(compact, memory_format)
        with torch.inference_mode():
            times = time_interleaved({"dense": lambda: laid_out(x),
                                      "pruned": lambda: compact(x)},
                                     device, warmup=3, repeats=repeats,
                                     max_seconds=max_seconds / len(fractions))
        measured = paired_ratio(times, "dense", "pruned")
        theoretical = dense_flops / compact_flops
        result[str(fraction)] = measured / theoretical
        result["details"][str(fraction)] = {
            "measured_speedup": measured, "flops_ratio": theoretical,
            "dense_ms": statistics.median(times["dense"]),
            "pruned_ms": statistics.median(times["pruned"]),
            "params_dense": sum(p.numel() for p in dense.parameters()),
            "params_pruned": sum(p.numel() for p in compact.parameters()),
            "repeats": len(times["dense"])}
    return result


def channel_figures(device: torch.device, repeats: int = 20, max_seconds: float = 20.0,
                    **kwargs) -> dict[str, Any]:
    """Channel pruning's speed-up / FLOPs ratio in both memory layouts, as the JSON reports it.

    The headline ``channel_speedup_vs_flops`` is the channels_last measurement
    (``channel_memory_format`` names it); ``channel_speedup_vs_flops_channels_first`` is the
    same in PyTorch's default NCHW layout. Each layout's dense and pruned models are timed
    interleaved; ``max_seconds`` is shared by the two layouts. ``kwargs`` go to
    ``channel_speedup_vs_flops`` (fractions, batch_size, model_name, width, include_first).
    """
    measured = {fmt: channel_speedup_vs_flops(device, repeats=repeats,
                                              max_seconds=max_seconds / 2,
                                              memory_format=fmt, **kwargs)
                for fmt in ("channels_last", "channels_first")}

    def ratios(result: dict[str, Any]) -> dict[str, float]:
        return {k: v for k, v in result.items()
                if k not in ("model", "batch_size", "memory_format", "batchnorm", "details")}

    last, first = measured["channels_last"], measured["channels_first"]
    return {"channel_speedup_vs_flops": ratios(last),
            "channel_memory_format": "channels_last",
            "channel_speedup_vs_flops_channels_first": ratios(first),
            "details": {"model": last["model"], "batch_size": last["batch_size"],
                        "batchnorm": last["batchnorm"],
                        "headline_memory_format": "channels_last",
                        "why_layouts_differ": LAYOUT_EXPLANATION,
                        "channels_last": {"ratio": ratios(last), **last["details"]},
                        "channels_first": {"ratio": ratios(first), **first["details"]}}}


def csr_speedup(device: torch.device, max_seconds: float = 6.0) -> dict[str, Any]:
    """dense / CSR time of a 1024x1024 Linear at batch 64 at 90, 95 and 99 % sparsity."""
    from pruning.speedlab import csr_crossover

    sparsities = (0.9, 0.95, 0.99)
    measured = csr_crossover(1024, 1024, 64, sparsities=sparsities, device=device,
                             max_seconds=max_seconds)
    result: dict[str, Any] = {str(s): v for s, v in zip(sparsities, measured["speedup"])}
    result["dense_ms"] = measured["dense_ms"]
    result["csr_ms"] = measured["csr_ms"]
    return result


def ssc_vs_masked_ratio(device: torch.device) -> dict[str, Any]:
    """SSC forward / masked dense forward at the same parameters (None if SSC is absent)."""
    try:
        from pruning.methods.ssc import ssc_forward_vs_masked
    except ImportError as exc:
        return {"ratio": None, "note": f"SSC layer not available: {exc}"}
    measured = ssc_forward_vs_masked(device=device)
    return {"ratio": measured["ratio"], **{k: v for k, v in measured.items() if k != "ratio"}}


def _figures(device: torch.device, quick: bool) -> dict[str, Any]:
    scale = 0.2 if quick else 1.0
    step = masked_step_ratio(device, repeats=int(200 * scale), max_seconds=20.0 * scale)
    session = session_overhead_ratio(device, repeats=1 if quick else 4)
    prune_step = pruning_step(device)
    channel = channel_figures(device, repeats=max(5, int(20 * scale)),
                              max_seconds=40.0 * scale)
    figures: dict[str, Any] = {
        "masked_step_ratio": step["ratio"],
        "session_overhead_ratio": session["ratio"],
        "channel_speedup_vs_flops": channel["channel_speedup_vs_flops"],
        "channel_memory_format": channel["channel_memory_format"],
        "channel_speedup_vs_flops_channels_first":
            channel["channel_speedup_vs_flops_channels_first"],
        "ssc_vs_masked_ratio": None,
        "details": {"masked_step": step, "session": session, "pruning_step": prune_step,
                    "channel": channel["details"]},
    }
    if not quick:  # the sessions' default: first layer at full width, in the headline layout
        kept = channel_speedup_vs_flops(device, repeats=10, max_seconds=15.0, include_first=False,
                                        memory_format="channels_last")
        figures["details"]["channel_first_layer_kept"] = kept
    if device.type == "cpu":
        csr = csr_speedup(device, max_seconds=6.0 * scale)
        figures["csr_speedup"] = {k: csr[k] for k in ("0.9", "0.95", "0.99")}
        figures["details"]["csr"] = csr
    ssc = ssc_vs_masked_ratio(device)
    figures["ssc_vs_masked_ratio"] = ssc["ratio"]
    figures["details"]["ssc"] = ssc
    return figures


def sweep_parallel_ratio(runs: int = 12, cpus: int = 2, epochs: int | None = None
                         ) -> dict[str, Any]:
    """Wall time of a ``runs``-run sweep on a local Ray with ``cpus`` CPUs over the same sweep
    in this process; None (with the reason) where Ray cannot start. The grid is the default
    session under four schedules and three sparsities, each run of ``epochs`` epochs (default:
    the default session's)."""
    from pruning.store import RunStore
    from pruning.sweeps import RayUnavailable, connect, run_sweep

    base = RunConfig() if epochs is None else RunConfig(epochs=epochs)
    grid = [base.replace(schedule=schedule, sparsity=sparsity)
            for schedule in ("one_shot", "iterative", "agp", "one_cycle")
            for sparsity in (0.8, 0.9, 0.95)]
    configs = (grid * (runs // len(grid) + 1))[:runs]
    seconds: dict[str, float] = {}
    outcomes = {}
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        outcomes["local"] = run_sweep(configs, RunStore(Path(home) / "local"), engine="local")
        seconds["local"] = time.perf_counter() - started
        started = time.perf_counter()
        try:
            ray = connect(num_cpus=cpus)
        except RayUnavailable as exc:
            return {"ratio": None, "note": str(exc)}
        seconds["ray_start"] = time.perf_counter() - started
        try:
            outcomes["ray"] = run_sweep(configs, RunStore(Path(home) / "ray"), engine="ray",
                                        keep_ray=True)
        finally:
            stopping = time.perf_counter()
            ray.shutdown()
            seconds["ray_shutdown"] = time.perf_counter() - stopping
        seconds["ray"] = time.perf_counter() - started  # start and shutdown included
    done = {engine: sum(r.status == "done" for r in out.runs) for engine, out in outcomes.items()}
    # the same without Ray's start and shutdown, which a longer sweep (or the app, which keeps
    # its Ray) pays once: what the parallel runs themselves gain
    runs_only = seconds["ray"] - seconds["ray_start"] - seconds["ray_shutdown"]
    return {"ratio": round(seconds["ray"] / seconds["local"], 3), "runs": runs, "cpus": cpus,
            "epochs": base.epochs,
            **{f"{part}_s": round(value, 2) for part, value in seconds.items()},
            "ratio_without_ray_start": round(runs_only / seconds["local"], 3),
            "runs_done": done}


def run_benchmark(device: torch.device | str | None = None, quick: bool = False,
                  threads: int | None = None, sweep: bool = False) -> dict[str, Any]:
    """All figures on the CPU (the targets are for a 2-core CPU), plus the same under "cuda"
    when a CUDA GPU is present and ``device`` is None or CUDA. ``quick`` takes fewer repeats;
    ``threads`` sets torch's CPU threads for the run (restored after): on a machine shared with
    other work, one thread avoids threads waiting on each other at every parallel region.
    ``sweep`` adds ``sweep_parallel_ratio`` (minutes; None without it)."""
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = _run_benchmark(device, quick)
        result["targets"]["sweep_parallel_ratio"] = "<= 0.65"
        result["sweep_parallel_ratio"] = None
        if sweep:
            details = result.setdefault("details", {})
            figure = details["sweep"] = sweep_parallel_ratio()
            result["sweep_parallel_ratio"] = figure["ratio"]
            # Ray's start, stop and each worker's first imports cost seconds whatever the runs:
            # the same grid with runs four times as long shows what the parallel runs gain
            long = details["sweep_long_runs"] = sweep_parallel_ratio(epochs=4 * RunConfig().epochs)
            result["sweep_parallel_ratio_long_runs"] = long["ratio"]
        return result
    finally:
        torch.set_num_threads(previous_threads)


def _run_benchmark(device: torch.device | str | None, quick: bool) -> dict[str, Any]:
    cpu = torch.device("cpu")
    result: dict[str, Any] = {"machine": machine_info(cpu),
                              "targets": {"masked_step_ratio": "<= 1.05",
                                          "session_overhead_ratio": "<= 1.2",
                                          "channel_speedup_vs_flops": ">= 0.8"}}
    wanted = None if device is None else as_device(device)
    if wanted is None or wanted.type == "cpu":
        result.update(_figures(cpu, quick))
    if torch.cuda.is_available() and (wanted is None or wanted.type == "cuda"):
        gpu = wanted if wanted is not None else torch.device("cuda")
        result["cuda"] = {"machine": machine_info(gpu), **_figures(gpu, quick)}
    if hasattr(os, "getloadavg"):  # other work on the machine during the run, for the reader
        result["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    return result
