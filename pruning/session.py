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
from pathlib import Path
from typing import Any, Callable

import torch

from pruning.config import ConfigError, RunConfig
from pruning.masks import Mask
from pruning.store import Run, RunStore, StoreError
from pruning.training import Event, RunContext, RunDiverged, RunStopped, evaluate

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
                measure_latency: bool = True) -> Run:
    """Run one pruning session and return its Run record (done, failed or stopped)."""
    from pruning import methods, models
    from pruning.metrics.flops import count_flops

    session_started = time.perf_counter()
    bundle, device = prepare(config, download=download)
    method = methods.build_method(config)
    torch.manual_seed(config.seed)
    model = models.build_model(config, bundle.in_channels, bundle.num_classes, bundle.image_size)
    input_shape = (bundle.in_channels, bundle.image_size, bundle.image_size)
    flops_dense = count_flops(model, input_shape)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(choose_threads(config, device, flops_dense))
    try:
        return _run(config, store, method, model, bundle, device, input_shape, flops_dense,
                    on_event, should_stop, name, measure_latency, session_started)
    finally:
        torch.set_num_threads(previous_threads)


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


def _run(config, store, method, model, bundle, device, input_shape, flops_dense,
         on_event, should_stop, name, measure_latency, session_started) -> Run:
    from pruning.metrics.flops import count_flops, masked_flops
    from pruning.metrics.latency import compare_latency
    from pruning.metrics.sparsity import param_counts, sparsity_report
    from pruning.physical import compact_model

    run_id = store.create_run(config, environment(device), name=name)
    if on_event is not None:  # callers (the app's jobs) learn the new run's id at once
        on_event(Event("created", 0, 0, {"run_id": run_id}))
    recorder = StoreRecorder(store, run_id)
    started = session_started  # duration_s covers the whole call, setup included
    summary: dict[str, Any] = {}
    timings: dict[str, float] = {}  # filled by fit (see RunContext.timings) and below
    final_started: float | None = None  # set once the method's run has returned
    try:
        dense_model = copy.deepcopy(model)
        dense_counts = param_counts(dense_model, None)
        steps_per_epoch = bundle.steps_per_epoch("train", config.batch_size)
        ctx = RunContext(config=config, method_config=method.method_config, data=bundle,
                         device=device, recorder=recorder, on_event=on_event,
                         should_stop=should_stop, total_epochs=config.epochs,
                         snapshot_steps=snapshot_steps(config.epochs * steps_per_epoch,
                                                       config.snapshots), timings=timings)
        training_started = ctx.add_time("setup", session_started)
        try:
            result = method.run(model, ctx)
        finally:  # what the method did outside fit's timed parts (scoring at the start,
            # surgery between phases, conversions) is method work too
            ended = time.perf_counter()
            timings["method"] = timings.get("method", 0.0) + ended - training_started \
                - sum(timings.get(part, 0.0) for part in FIT_PARTS)
        final_started = ended
        model, mask = result.model.to(device), result.mask
        if should_stop is not None and should_stop():
            raise RunStopped()
        ctx.emit("measure", 0, 1, message="measuring FLOPs and latency")
        test_loss, test_acc = evaluate(model, bundle, device, check_stop=ctx.check_stop)
        if mask is not None:
            final_step = max(ctx.steps_done, 1)
            existing = {s["step"] for s in store.snapshots(run_id)}
            if final_step not in existing:
                recorder.snapshot(final_step, float(ctx.epochs_done), mask)
        example = torch.zeros((1, *input_shape), device=device)
        try:
            compact = compact_model(model, mask, example)
        except Exception as exc:  # a layer type the dependency graph cannot cut: say so, go on
            compact = model
            summary["compact_note"] = f"physical removal not possible here: {exc}"
        ctx.check_stop()  # compaction can take seconds on large models: stop between stages
        final_counts = param_counts(model, mask)
        compact_counts = param_counts(compact, None)
        summary.update(
            test_acc=test_acc, test_loss=test_loss, test_examples=len(bundle.test_y),
            train_acc=recorder.last_epoch.get("train_acc"),
            **sparsity_report(config.sparsity, mask, dense_counts["params"],
                              compact_counts["params"]),
            params_dense=dense_counts["params"], params=final_counts["params"],
            params_nonzero=final_counts["params_nonzero"],
            params_compact=compact_counts["params"],
            flops_dense=flops_dense,
            flops=masked_flops(model, mask, input_shape),
            flops_compact=count_flops(compact, input_shape),
            epochs_done=ctx.epochs_done, steps_done=ctx.steps_done,
        )
        if mask is None:  # the architecture changed instead: only effective sparsity applies
            summary["mask_sparsity"] = None
        summary.update(result.summary)
        if measure_latency:
            ctx.check_stop()
            # Dense and final timed round-robin on one batch (a fair ratio on a busy machine);
            # 12 rounds give a stable median in well under 0.1 s for the default model. The
            # Speed lab measures more batch sizes and forms on request.
            latency = compare_latency({"final": compact, "dense": dense_model}, input_shape,
                                      device, batch_size=min(64, config.batch_size), warmup=2,
                                      repeats=12, max_seconds=2.0)
            final_latency, dense_latency = latency["final"], latency["dense"]
            summary.update(latency_ms=final_latency["median_ms"],
                           latency_p90_ms=final_latency["p90_ms"],
                           latency_dense_ms=dense_latency["median_ms"],
                           latency_batch_size=final_latency["batch_size"],
                           latency_device=final_latency["device"],
                           latency_dtype=final_latency["dtype"],
                           latency_threads=final_latency["threads"])
        ctx.check_stop()
        store.save_model(run_id, model, whole_module=method.changes_architecture)
        timings["final_measurement"] = time.perf_counter() - final_started
        summary["duration_s"] = time.perf_counter() - started
        summary["time_breakdown_s"] = _rounded(timings)
        store.finish_run(run_id, "done", summary)
    except (RunStopped, KeyboardInterrupt):
        _final_time(timings, final_started)
        store.finish_run(run_id, "stopped", _partial(summary, recorder, started, timings),
                         error="stopped by the user")
    except RunDiverged as exc:  # the reason and its fix, in one line: no traceback to read
        _final_time(timings, final_started)
        store.finish_run(run_id, "failed", _partial(summary, recorder, started, timings),
                         error=str(exc))
    except Exception as exc:  # a failed run is recorded with what it had, never lost
        _final_time(timings, final_started)
        store.finish_run(run_id, "failed", _partial(summary, recorder, started, timings),
                         error=str(exc) if isinstance(exc, StoreError)  # names file and fix
                         else f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
    return store.get_run(run_id)


TIME_PARTS = {
    "setup": "setup (data, model, store entry)",
    "training": "training steps",
    "method": "the method's own work (re-pruning and mask re-application after each step, "
              "scoring, surgery between phases, attentions, ADMM)",
    "evaluation": "evaluation after each epoch",
    "recording": "recording (epoch rows, mask snapshots)",
    "final_measurement": "final evaluation, FLOPs, compaction, latency and saving",
}


FIT_PARTS = ("training", "method", "evaluation", "recording")  # what fit's clock measures


def _final_time(timings: dict[str, float], final_started: float | None) -> None:
    """A run that ended during its final measurement: the time that stage ran."""
    if final_started is not None and "final_measurement" not in timings:
        timings["final_measurement"] = time.perf_counter() - final_started


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    """Where a run's time went, in seconds (ms precision), in the order of ``TIME_PARTS``."""
    return {part: round(timings[part], 3) for part in TIME_PARTS if part in timings}


def time_breakdown_text(summary: dict[str, Any]) -> str | None:
    """One line: where a run's time went, e.g. "training steps 2.71 s (78 %) · ...", or None."""
    breakdown = summary.get("time_breakdown_s")
    if not breakdown:
        return None
    total = sum(breakdown.values()) or 1.0
    return " · ".join(f"{TIME_PARTS.get(part, part)} {seconds:.2f} s ({seconds / total:.0%})"
                      for part, seconds in breakdown.items())


def _partial(summary: dict[str, Any], recorder: StoreRecorder, started: float,
             timings: dict[str, float]) -> dict[str, Any]:
    """What a stopped or failed run had: the last epoch's metrics and the time it ran."""
    last = recorder.last_epoch
    partial = dict(summary)
    for key in ("test_acc", "test_loss", "train_acc", "target_sparsity", "mask_sparsity"):
        if key not in partial and last.get(key) is not None:
            partial[key] = last[key]
    partial["epochs_done"] = last.get("epoch", 0)
    partial["duration_s"] = time.perf_counter() - started
    if timings:
        partial["time_breakdown_s"] = _rounded(timings)
    return partial
