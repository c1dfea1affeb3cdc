"""Command line: ``python -m pruning run|list|show|sweep|export|bench``.

Every RunConfig field is a ``run`` flag (``--sparsity 0.95``, ``--prune-first-last``); a
method's own settings go through ``--param key=value`` (validated against the method's config
dataclass). Bad input ends with one line naming the problem and the fix, exit code 2, and
nothing written to the store.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import statistics
import sys
from typing import Any, Sequence

from pruning.config import ConfigError, RunConfig
from pruning.store import Run, RunStore
from pruning.training import Event

EXIT_BAD_INPUT = 2


# ---- argument parsing ------------------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, typed from the defaults."""
    for f in dataclasses.fields(RunConfig):
        if f.name == "method_params":
            parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                                help="a setting of the chosen method (repeatable), e.g. -p lam=5")
            continue
        default = f.default
        if isinstance(default, bool):
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction,
                                default=default, help=f"(default: {default})")
        else:
            parser.add_argument(_flag(f.name), type=type(default), default=default,
                                help=f"(default: {default})")


def parse_params(items: Sequence[str]) -> dict[str, str]:
    params = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}; e.g. --param lam=5")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name == "method_params":
            values[f.name] = parse_params(args.param)
        else:
            values[f.name] = getattr(args, f.name)
    config = RunConfig(**values)
    config.validate()
    # Store method params in their typed form so configs compare and print cleanly.
    from pruning.methods import method_config
    typed = method_config(config)
    if typed is not None and config.method_params:
        config = config.replace(method_params={k: getattr(typed, k) for k in config.method_params})
    return config


# ---- output ------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line progress bar on stderr; silent when stderr is not a terminal unless forced."""

    def __init__(self, stream=sys.stderr, enabled: bool = True, width: int = 30):
        self.stream, self.enabled, self.width = stream, enabled, width
        self.last_line = ""

    def __call__(self, event: Event) -> None:
        if not self.enabled or event.total <= 0:
            return
        fraction = min(1.0, event.step / event.total)
        filled = int(fraction * self.width)
        m = event.metrics
        parts = [f"{event.phase:<9}", "[" + "#" * filled + "-" * (self.width - filled) + "]",
                 f"{fraction:4.0%}"]
        if m.get("epoch") is not None:
            parts.append(f"epoch {m['epoch']}")
        if m.get("loss") is not None:
            parts.append(f"loss {m['loss']:.3f}")
        if m.get("test_acc") is not None:
            parts.append(f"acc {m['test_acc']:.1%}")
        if m.get("target_sparsity") is not None:
            parts.append(f"target {m['target_sparsity']:.1%}")
        if m.get("mask_sparsity") is not None:
            parts.append(f"mask {m['mask_sparsity']:.1%}")
        line = " ".join(parts)
        self.stream.write("\r" + line.ljust(len(self.last_line)))
        self.stream.flush()
        self.last_line = line

    def close(self) -> None:
        if self.enabled and self.last_line:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "flops":
        return f"{value / 1e6:.2f}M"
    if kind == "ms":
        return f"{value:.2f}"
    return str(value)


SUMMARY_ROWS = [
    ("test accuracy", "test_acc", "pct"), ("target sparsity", "target_sparsity", "pct"),
    ("mask sparsity", "mask_sparsity", "pct"), ("effective sparsity", "effective_sparsity", "pct"),
    ("parameters (dense)", "params_dense", "int"), ("nonzero parameters", "params_nonzero", "int"),
    ("parameters after removal", "params_compact", "int"),
    ("FLOPs dense", "flops_dense", "flops"), ("FLOPs under mask", "flops", "flops"),
    ("FLOPs after removal", "flops_compact", "flops"),
    ("latency dense (ms)", "latency_dense_ms", "ms"), ("latency final (ms)", "latency_ms", "ms"),
    ("latency final p90 (ms)", "latency_p90_ms", "ms"), ("duration (s)", "duration_s", "ms"),
]


def summary_table(run: Run) -> str:
    s = run.summary
    lines = [f"run {run.id}  [{run.status}]  {run.label()}"]
    for label, key, kind in SUMMARY_ROWS:
        if key in s:
            lines.append(f"  {label:<26} {_fmt(s.get(key), kind)}")
    if "latency_device" in s:
        lines.append(f"  {'latency measured on':<26} {s['latency_device']}, batch "
                     f"{s.get('latency_batch_size')}, {s.get('latency_threads')} threads")
    from pruning.session import time_breakdown_text

    where_time_went = time_breakdown_text(s)
    if where_time_went:
        lines.append(f"  {'time':<26} {where_time_went}")
    if run.error and run.status == "failed":
        lines.append("  error: " + run.error.splitlines()[0])
    return "\n".join(lines)


def run_json(store: RunStore, run: Run) -> dict[str, Any]:
    history = [{"epoch": e.get("epoch"), "phase": e.get("phase"),
                "test_acc": e.get("test_acc"), "train_acc": e.get("train_acc"),
                "test_loss": e.get("test_loss"), "target_sparsity": e.get("target_sparsity"),
                "mask_sparsity": e.get("mask_sparsity")} for e in store.epochs(run.id)]
    out = run.to_dict()
    out["history"] = history
    return out


LIST_COLUMNS = [("id", 22), ("status", 8), ("model", 10), ("method", 11), ("schedule", 10),
                ("seed", 4), ("target", 7), ("acc", 7), ("sparsity", 8), ("MFLOPs", 8),
                ("lat ms", 7)]


def list_table(runs: list[Run]) -> str:
    header = " ".join(name.ljust(width) for name, width in LIST_COLUMNS)
    lines = [header, "-" * len(header)]
    for run in runs:
        s, c = run.summary, run.config
        cells = [run.id, run.status, c.model, c.method, c.schedule, str(c.seed),
                 _fmt(c.sparsity, "pct"), _fmt(s.get("test_acc"), "pct"),
                 _fmt(s.get("mask_sparsity") if s.get("mask_sparsity") is not None
                      else s.get("effective_sparsity"), "pct"),
                 _fmt(s.get("flops"), "flops").rstrip("M"), _fmt(s.get("latency_ms"), "ms")]
        lines.append(" ".join(cell[:w].ljust(w) for cell, (_, w) in zip(cells, LIST_COLUMNS)))
    return "\n".join(lines)


# ---- commands ----------------------------------------------------------------------------------
def cmd_run(args, store: RunStore) -> int:
    from pruning.session import run_session

    config = config_from_args(args)
    bar = ProgressBar(enabled=not args.quiet and not args.json)
    run = run_session(config, store, on_event=bar, download=args.download, name=args.name)
    bar.close()
    if args.json:
        print(json.dumps(run_json(store, run), indent=None))
    else:
        print(summary_table(run))
    return 0 if run.status == "done" else 1


def cmd_list(args, store: RunStore) -> int:
    runs = store.list_runs(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs]))
    elif not runs:
        print(f"no runs yet in {store.home}; start one with `python -m pruning run`")
    else:
        print(list_table(runs))
    return 0


def cmd_show(args, store: RunStore) -> int:
    run = store.get_run(args.run)
    if args.json:
        print(json.dumps(run_json(store, run)))
        return 0
    print(summary_table(run))
    changed = [f"{k}={v}" for k, v in run.config.to_dict().items() if v != getattr(RunConfig(), k)]
    print("  config: " + (", ".join(changed) if changed else "the default session"))
    print("  epoch  phase      test acc  target   mask")
    for e in store.epochs(run.id):
        print(f"  {e['epoch']:>5}  {str(e.get('phase')):<9}  {_fmt(e.get('test_acc'), 'pct'):>8}  "
              f"{_fmt(e.get('target_sparsity'), 'pct'):>6}  {_fmt(e.get('mask_sparsity'), 'pct'):>6}")
    return 0


def sweep_configs(args) -> list[RunConfig]:
    base = config_from_args(args)
    if args.preset == "ssc":
        from pruning.methods.ssc import ssc_baseline_configs
        configs = []
        for seed in _split(args.seeds, int) or [base.seed]:
            configs += ssc_baseline_configs(base.replace(seed=seed))
        return configs
    if args.preset == "schedules":
        schedules = ["one_shot", "iterative", "agp", "one_cycle"]
        seeds = _split(args.seeds, int) or [0, 1, 2]
    else:
        schedules = _split(args.schedules, str) or [base.schedule]
        seeds = _split(args.seeds, int) or [base.seed]
    grid = itertools.product(_split(args.models, str) or [base.model],
                             _split(args.methods, str) or [base.method], schedules,
                             _split(args.sparsities, float) or [base.sparsity], seeds)
    configs = []
    for model, method, schedule, sparsity, seed in grid:
        config = base.replace(model=model, method=method, schedule=schedule, sparsity=sparsity,
                              seed=seed)
        config.validate()
        configs.append(config)
    return configs


def _split(text: str | None, kind) -> list:
    if not text:
        return []
    try:
        return [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a comma-separated list of {kind.__name__}") from None


def schedule_table(runs: list[Run]) -> str:
    """Final accuracy mean ± std per (sparsity, schedule) — the One-Cycle experiment's table."""
    groups: dict[tuple, list[float]] = {}
    for run in runs:
        if run.status == "done":
            key = (run.config.sparsity, run.config.method, run.config.schedule)
            groups.setdefault(key, []).append(run.summary["test_acc"])
    lines = ["sparsity  method       schedule    runs  accuracy (mean ± std)"]
    for (sparsity, method, schedule), accs in sorted(groups.items()):
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"{sparsity:<8.2f}  {method:<11}  {schedule:<10}  {len(accs):>4}  "
                     f"{statistics.mean(accs):.2%} ± {std:.2%}")
    return "\n".join(lines)


def cmd_sweep(args, store: RunStore) -> int:
    from pruning.session import prepare
    from pruning.sweeps import default_engine, run_sweep

    configs = sweep_configs(args)
    engine = args.engine or default_engine()
    if engine == "local":
        for config in {c.dataset + str(c.image_size) + str(c.channels): c for c in configs}.values():
            prepare(config, download=args.download)  # refuse missing data before any run is written
    # On Ray the workers read their own data: a worker without it refuses its runs by name.
    progress = not args.quiet and not args.json
    # a progress bar for the run training now; on Ray several train at once: a line as each ends
    new_bar = lambda: ProgressBar(enabled=progress and engine == "local")  # noqa: E731
    bar = [new_bar()]

    def on_run_end(index: int, run: Run | None, error: str | None) -> None:
        bar[0].close()
        bar[0] = new_bar()
        if progress:
            config = configs[index]
            print(f"[{index + 1}/{len(configs)}] {config.model} {config.method} {config.schedule} "
                  f"{config.sparsity:g} seed {config.seed}: "
                  f"{run.status if run else 'not run'}" + (f" ({error})" if error else ""),
                  file=sys.stderr)

    # Ray prints its own notes (e.g. "a worker died") to stdout: keep stdout for the results
    with contextlib.redirect_stdout(sys.stderr):
        outcome = run_sweep(configs, store, engine=engine, address=args.address,
                            on_event=lambda index, event: bar[0](event), on_run_end=on_run_end,
                            download=args.download)
    if outcome.note:
        print(outcome.note, file=sys.stderr)
    runs = outcome.runs
    if args.json:
        print(json.dumps([run_json(store, r) for r in runs]))
    else:
        print(list_table(runs))
        print()
        print(schedule_table(runs))
    for line in outcome.errors[:3]:
        print(f"error: {line}", file=sys.stderr)
    if outcome.aborted:
        print(f"error: {outcome.aborted}", file=sys.stderr)
        return 1
    if outcome.errors and not runs:
        return EXIT_BAD_INPUT  # every run was refused (e.g. data missing on the workers)
    if outcome.stopped:
        return 130
    return 0 if all(r.status == "done" for r in runs) and not outcome.errors else 1


def cmd_export(args, store: RunStore) -> int:
    from pruning.export import export_run

    paths = export_run(store, args.run, args.out, onnx=args.onnx, compact=args.compact)
    for kind, path in paths.items():
        print(f"{kind:<10} {path}")
    return 0


def cmd_bench(args, store: RunStore) -> int:
    from pruning.bench import run_benchmark

    result = run_benchmark(threads=args.threads, quick=args.quick, sweep=args.sweep)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pruning",
                                     description="Pruning Explorer: run and inspect pruning sessions.")
    parser.add_argument("--home", default=None, help="store folder (default: $PRUNING_HOME or ~/.pruning)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one pruning session (defaults: the default session)")
    add_config_flags(run)
    run.add_argument("--name", default=None, help="a label for the run")
    run.add_argument("--download", action="store_true", help="download the dataset if missing")
    run.add_argument("--json", action="store_true", help="print one JSON object at the end")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    lst = sub.add_parser("list", help="list runs with accuracy, sparsity, FLOPs and latency")
    lst.add_argument("--status", choices=["running", "done", "failed", "stopped"])
    lst.add_argument("--limit", type=int, default=None)
    lst.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="show one run (id or unique prefix)")
    show.add_argument("run")
    show.add_argument("--json", action="store_true")

    sweep = sub.add_parser("sweep", help="run a grid of sessions (comma-separated lists)")
    add_config_flags(sweep)
    sweep.add_argument("--models")
    sweep.add_argument("--methods")
    sweep.add_argument("--schedules")
    sweep.add_argument("--sparsities")
    sweep.add_argument("--seeds")
    sweep.add_argument("--preset", choices=["schedules", "ssc"],
                       help="schedules: one_shot/iterative/agp/one_cycle × 3 seeds; "
                            "ssc: SSC vs pruning at init (random/snip/grasp/synflow)")
    sweep.add_argument("--download", action="store_true")
    sweep.add_argument("--engine", choices=["ray", "local"], default=None,
                       help="ray: each run a Ray task, in parallel (default; $PRUNING_SWEEP_ENGINE); "
                            "local: one after another in this process")
    sweep.add_argument("--address", default=None,
                       help="join the Ray cluster at this address (default: $PRUNING_RAY_ADDRESS, "
                            "else start a local Ray on this machine's cores)")
    sweep.add_argument("--json", action="store_true")
    sweep.add_argument("--quiet", "-q", action="store_true")

    export = sub.add_parser("export", help="export a run: weights .pt, metrics CSV, compact model, ONNX")
    export.add_argument("run")
    export.add_argument("--out", default=".", help="folder to write into (default: here)")
    export.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=False)
    export.add_argument("--compact", action=argparse.BooleanOptionalAction, default=True)

    bench = sub.add_parser("bench", help="measure what pruning costs and buys on this machine")
    bench.add_argument("--json", action="store_true", help="one JSON object on one line")
    bench.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads for the measurements (default: torch's own)")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    bench.add_argument("--sweep", action="store_true",
                       help="add sweep_parallel_ratio: a 12-run sweep on a local Ray with 2 CPUs "
                            "over the same sweep in this process (about two minutes more)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"run": cmd_run, "list": cmd_list, "show": cmd_show, "sweep": cmd_sweep,
                "export": cmd_export, "bench": cmd_bench}
    try:
        store = RunStore(args.home) if args.home else RunStore()
        return commands[args.command](args, store)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): nothing left to say; silence the final flush.
        sys.stdout = open(os.devnull, "w")
        return 0
