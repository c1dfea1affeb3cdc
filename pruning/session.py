"""``run_session``: the one entry point that the CLI, the app, sweeps and benchmarks call.

config → validate (nothing is written for bad input) → data and model from the registries → the
method trains/prunes while events go to the caller and history to the store → final metrics:
accuracy, the three sparsities (target, mask, effective), parameters, FLOPs and measured latency
of both the dense model and the final (physically compacted) one.

A run that raises is recorded as ``failed`` with the error; one stopped by ``should_stop`` (or
Ctrl-C) as ``stopped`` with the history it had. Either way nothing already recorded is lost.
"""
from __future__ import annotations

import copy
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from pruning.config import ConfigError, RunConfig
from pruning.masks import Mask
from pruning.results import TIME_PARTS, RunSummary, method_extras, time_breakdown_text
from pruning.store import Run, RunStore, StoreError
from pruning.training import Event, RunContext, RunDiverged, RunStopped, Stopwatch, evaluate

__all__ = ["run_session", "prepare", "train", "measure", "TIME_PARTS", "time_breakdown_text",
           "choose_threads", "set_process_threads", "snapshot_steps", "resolve_device"]

# Models cheaper than this per example (FLOPs) train fastest on one CPU thread.
SMALL_MODEL_FLOPS = 20_000_000


class StoreRecorder:
    """Routes a run's history into the store."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.last_epoch: dict[str, Any] = {}

    def epoch(self, row: dict[str, Any]) -> None:
        self.last_epoch = row
        self.store.add_epoch(self.run_id, row)

    def trace(self, kind: str, step: int, payload: dict[str, Any]) -> None:
        self.store.add_trace(self.run_id, kind, step, payload)

    def snapshot(self, step: int, epoch: float, mask: Mask) -> None:
        self.store.add_snapshot(self.run_id, step, epoch, mask)


def resolve_device(requested: str = "auto") -> torch.device:
    """cuda > mps > cpu for ``auto``; PRUNING_DEVICE overrides ``auto``; refuse what is absent."""
    if requested == "auto":
        requested = os.environ.get("PRUNING_DEVICE", "auto") or "auto"
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                   and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was asked for but is not available; use --device cpu")
    if requested not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {requested!r}; choose auto, cpu, cuda or mps")
    return torch.device(requested)


def environment(device: torch.device) -> dict[str, Any]:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": str(device),
            "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        info["git_sha"] = sha or None
    except (OSError, subprocess.SubprocessError):
        info["git_sha"] = None
    return info


def prepare(config: RunConfig, download: bool = False):
    """Validate and load everything a run needs, before anything is written. Raises ConfigError."""
    from pruning import data, models
    from pruning.validation import validate

    validate(config)
    channels, size, classes = data.dataset_shape(config)
    models.check_compatible(config.model, channels, size)
    device = resolve_device(config.device)
    bundle = data.load_dataset(config, download=download)
    return bundle, device


def snapshot_steps(total_steps: int, count: int) -> set[int]:
    """``count`` optimizer steps spread evenly over the run, the last one included."""
    if count <= 0 or total_steps <= 0:
        return set()
    count = min(count, total_steps)
    return {max(1, round(total_steps * (i + 1) / count)) for i in range(count)}


def run_session(config: RunConfig, store: RunStore,
                on_event: Callable[[Event], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                download: bool = False, name: str | None = None,
                measure_latency: bool = True,
                clock: Callable[[], float] = time.perf_counter) -> Run:
    """Run one pruning session and return its Run record (done, failed or stopped).

    The first event is ``created`` (step 0 of 0, ``run_id``) as soon as the run has its row in
    the store. ``clock`` times the run's parts (``time_breakdown_s``); tests inject a fake one.
    """
    from pruning import methods, models
    from pruning.metrics.flops import count_flops

    timer = Stopwatch(clock)
    started = clock()  # duration_s covers the whole call, setup included
    with timer("setup"):
        bundle, device = prepare(config, download=download)
        method = methods.build_method(config)
        # the initial weights come from the config's seed alone (models.build_model draws from
        # a private generator), whatever runs before or beside this run
        model = models.build_model(config, bundle.in_channels, bundle.num_classes,
                                   bundle.image_size)
        input_shape = (bundle.in_channels, bundle.image_size, bundle.image_size)
        flops_dense = count_flops(model, input_shape)
        set_process_threads(choose_threads(config, device, flops_dense))
        dense_model = copy.deepcopy(model)  # for the dense figures at the end
        run_id = store.create_run(config, environment(device), name=name)
    recorder = StoreRecorder(store, run_id)
    ctx = RunContext(config=config, method_config=method.method_config, data=bundle,
                     device=device, recorder=recorder, on_event=on_event,
                     should_stop=should_stop, total_epochs=config.epochs,
                     snapshot_steps=snapshot_steps(
                         config.epochs * bundle.steps_per_epoch("train", config.batch_size),
                         config.snapshots),
                     stopwatch=timer)
    trained: Trained | None = None
    try:
        ctx.emit("created", 0, 0, run_id=run_id)  # callers learn the id before training starts
        trained = train(method, model, ctx)
        if should_stop is not None and should_stop():
            raise RunStopped()
        with timer("final_measurement"):
            summary = measure(trained, dense_model, ctx, store, run_id, input_shape,
                              flops_dense, measure_latency)
            ctx.check_stop()
            store.save_model(run_id, trained.model, whole_module=method.changes_architecture)
        summary = replace(summary, duration_s=clock() - started,
                          time_breakdown_s=_rounded(timer.parts))
        store.finish_run(run_id, "done", summary.to_dict())
    except (RunStopped, KeyboardInterrupt):
        store.finish_run(run_id, "stopped", _partial(ctx, trained, clock() - started),
                         error="stopped by the user")
    except RunDiverged as exc:  # the reason and its fix, in one line: no traceback to read
        store.finish_run(run_id, "failed", _partial(ctx, trained, clock() - started),
                         error=str(exc))
    except Exception as exc:  # a failed run is recorded with what it had, never lost
        store.finish_run(run_id, "failed", _partial(ctx, trained, clock() - started),
                         error=str(exc) if isinstance(exc, StoreError)  # names file and fix
                         else f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
    return store.get_run(run_id)


def set_process_threads(count: int) -> None:
    """Torch's intra-op thread count is the process's: set it when it differs, never restore it.

    Runs of one process (a CLI call, a sweep, the app's jobs) make the same choice for the same
    kind of model, so the count is set once; restoring it after each run would change it under
    the runs still going in other threads.
    """
    if count > 0 and torch.get_num_threads() != count:
        torch.set_num_threads(count)


def choose_threads(config: RunConfig, device: torch.device, flops_per_example: int) -> int:
    """CPU threads for a run: the config's, or for ``auto`` one thread below SMALL_MODEL_FLOPS.

    Why: for small models each op is too short to split, and a second thread mostly waits. On
    the 2-core reference machine the default digits session took 4.6 s with one thread and 64 s
    with two while one other process was busy (the threads spin-wait on each other).
    """
    if config.threads > 0:
        return config.threads
    if device.type != "cpu" or flops_per_example < SMALL_MODEL_FLOPS:
        return 1
    return torch.get_num_threads()


@dataclass
class Trained:
    """What the training step hands the measuring step."""
    model: torch.nn.Module
    mask: Mask | None
    extras: dict[str, Any]         # the method's results, checked against its declaration


def train(method, model: torch.nn.Module, ctx: RunContext) -> Trained:
    """The method trains and prunes (timed as "method"; its fits time their own parts)."""
    with ctx.stopwatch("method"):
        result = method.run(model, ctx)
        extras = method_extras(method.extras, result.summary, ctx.config.method)
    return Trained(result.model.to(ctx.device), result.mask, extras)


def measure(trained: Trained, dense_model: torch.nn.Module, ctx: RunContext, store: RunStore,
            run_id: str, input_shape: tuple[int, int, int], flops_dense: int,
            measure_latency: bool) -> RunSummary:
    """Final figures of a trained run against ``dense_model`` (its initial weights): accuracy,
    the three sparsities, parameters, FLOPs, latency; the final mask snapshot if the last step
    had none."""
    from pruning.metrics.flops import count_flops, masked_flops
    from pruning.metrics.latency import compare_latency
    from pruning.metrics.sparsity import param_counts, sparsity_report
    from pruning.physical import compact_model

    config, device, model, mask = ctx.config, ctx.device, trained.model, trained.mask
    ctx.emit("measure", 0, 1, message="measuring FLOPs and latency")
    test_loss, test_acc = evaluate(model, ctx.data, device, check_stop=ctx.check_stop)
    if mask is not None:
        final_step = max(ctx.steps_done, 1)
        if final_step not in {s["step"] for s in store.snapshots(run_id)}:
            ctx.recorder.snapshot(final_step, float(ctx.epochs_done), mask)
    example = torch.zeros((1, *input_shape), device=device)
    note = None
    try:
        compact = compact_model(model, mask, example)
    except Exception as exc:  # a layer type the dependency graph cannot cut: say so, go on
        compact, note = model, f"physical removal not possible here: {exc}"
    ctx.check_stop()  # compaction can take seconds on large models: stop between stages
    dense_params = param_counts(dense_model, None)["params"]
    final_counts = param_counts(model, mask)
    compact_params = param_counts(compact, None)["params"]
    sparsities = sparsity_report(config.sparsity, mask, dense_params, compact_params)
    if mask is None:  # the architecture changed instead: only effective sparsity applies
        sparsities["mask_sparsity"] = None
    latency: dict[str, Any] = {}
    if measure_latency:
        ctx.check_stop()
        # Dense and final timed round-robin on one batch (a fair ratio on a busy machine);
        # 12 rounds give a stable median in well under 0.1 s for the default model. The
        # Speed lab measures more batch sizes and forms on request.
        timed = compare_latency({"final": compact, "dense": dense_model}, input_shape,
                                device, batch_size=min(64, config.batch_size), warmup=2,
                                repeats=12, max_seconds=2.0)
        final, dense = timed["final"], timed["dense"]
        latency = dict(latency_ms=final["median_ms"], latency_p90_ms=final["p90_ms"],
                       latency_dense_ms=dense["median_ms"],
                       latency_batch_size=final["batch_size"], latency_device=final["device"],
                       latency_dtype=final["dtype"], latency_threads=final["threads"])
    return RunSummary(
        test_acc=test_acc, test_loss=test_loss, test_examples=len(ctx.data.test_y),
        train_acc=ctx.recorder.last_epoch.get("train_acc"), **sparsities,
        params_dense=dense_params, params=final_counts["params"],
        params_nonzero=final_counts["params_nonzero"], params_compact=compact_params,
        flops_dense=flops_dense, flops=masked_flops(model, mask, input_shape),
        flops_compact=count_flops(compact, input_shape),
        epochs_done=ctx.epochs_done, steps_done=ctx.steps_done, compact_note=note,
        extras=trained.extras, **latency)


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    """Where a run's time went, in seconds (ms precision), in the order of ``TIME_PARTS``."""
    return {part: round(timings[part], 3) for part in TIME_PARTS if part in timings}


def _partial(ctx: RunContext, trained: Trained | None, duration: float) -> dict[str, Any]:
    """What a stopped or failed run had: the last epoch's metrics and the time it ran."""
    last = ctx.recorder.last_epoch
    summary = RunSummary(
        test_acc=last.get("test_acc"), test_loss=last.get("test_loss"),
        train_acc=last.get("train_acc"), target_sparsity=last.get("target_sparsity"),
        mask_sparsity=last.get("mask_sparsity"), epochs_done=last.get("epoch", 0),
        duration_s=duration, time_breakdown_s=_rounded(ctx.stopwatch.parts) or None,
        extras=trained.extras if trained is not None else {})
    return summary.to_dict()
