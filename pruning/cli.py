"""Command line: ``python -m pruning run|list|show|sweep|export|bench``.

Every RunConfig field is a ``run`` flag (``--sparsity 0.95``, ``--prune-first-last``); a
method's own settings go through ``--param key=value`` (validated against the method's config
dataclass). Bad input ends with one line naming the problem and the fix, exit code 2, and
nothing written to the store.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pruning.config import ConfigError, RunConfig, Spec, parse_value, specs
from pruning.schedules import SCHEDULES
from pruning.validation import (NAME_MAX, check_name, follows_schedule, parse_sweep_list, registry,
                                schedule_params_for, sweep_grid, validate)

if TYPE_CHECKING:  # the store and training import torch; `pruning --help` must not
    from pruning.store import Run, RunStore
    from pruning.training import Event

EXIT_BAD_INPUT = 2


# ---- argument parsing ------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse whose complaints become ConfigError, so ``main`` reports them like every other
    bad input: one line naming the problem and the fix (no usage block), exit code 2."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


class RegistryChoices:
    """A registry's names as argparse ``choices``, read only when a value is checked or the
    help is shown, so building the parser imports no registry that needs torch."""

    def __init__(self, key: str):
        self.key = key

    def _names(self) -> list[str]:
        return registry(self.key).names()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def _checked(check):
    """An argparse ``type`` from a function that raises ConfigError for bad text."""
    def read(text: str) -> Any:
        try:
            return check(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    read.__name__ = check.__name__
    return read


def _reader(s: Spec):
    """An argparse ``type`` reading a flag's text by its spec (NaN, inf, bounds refused; a
    registry name must be registered)."""
    def read(text: str) -> Any:
        value = parse_value(s, text, s.name.replace("_", " "))
        if s.registry is not None:
            registry(s.registry).entry(value)  # "unknown model 'x'; choose one of: …"
        return value
    read.__name__ = s.kind.__name__  # argparse names the type in its messages
    return _checked(read)


def _help(text: str) -> str:
    return text.replace("%", "%%")


def schedule_param_specs() -> dict[str, tuple[Spec, list[str]]]:
    """{parameter: (its spec, the schedules that take it)} over every registered schedule."""
    out: dict[str, tuple[Spec, list[str]]] = {}
    for name in SCHEDULES.names():
        cls = SCHEDULES.config_class(name)
        for s in specs(cls) if cls is not None else ():
            out.setdefault(s.name, (s, []))[1].append(name)
    return out


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig setting, from its description (``pruning.config.specs``); one per
    schedule parameter (generated from the schedules' registered dataclasses); ``-p`` for the
    method's own settings."""
    for s in specs():
        if s.name == "method_params":
            parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                                help="a setting of the chosen method (repeatable), e.g. -p lam=5; "
                                     "`python -m pruning run --method M -p x=1` names the valid "
                                     "ones if x is not")
        elif s.name == "schedule_params":
            continue
        elif s.kind is bool:
            parser.add_argument(s.flag, action=argparse.BooleanOptionalAction, default=s.default,
                                help=_help(s.describe()))
        elif s.registry is not None:
            parser.add_argument(s.flag, type=_reader(s), default=s.default,
                                choices=RegistryChoices(s.registry), metavar=s.name.upper(),
                                help=_help(s.help) + "; one of: %(choices)s; default: "
                                     + _help(str(s.default)))
        else:
            parser.add_argument(s.flag, type=_reader(s), default=s.default,
                                choices=s.choices, help=_help(s.describe()))
    group = parser.add_argument_group("schedule settings (each applies to the schedules named)")
    for name, (s, owners) in schedule_param_specs().items():
        group.add_argument("--" + name.replace("_", "-"), dest="schedule." + name, default=None,
                           metavar=name.upper(),
                           type=_reader(s),
                           help=_help(f"{s.describe()} [{', '.join(owners)}]"))


def parse_params(items: Sequence[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}; e.g. --param lam=5")
        params[key.strip()] = value.strip()
    return params


def given_schedule_params(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, "schedule." + name) for name in schedule_param_specs()
            if getattr(args, "schedule." + name, None) is not None}


def refuse_foreign_schedule_params(schedules: Sequence[str], given: dict[str, Any]) -> None:
    """A schedule flag none of the chosen schedules takes is a mistake: say whose it is."""
    owners = schedule_param_specs()
    for name in given:
        if not any(name in schedule_params_for(s, given) for s in schedules):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} is a setting of schedule {' / '.join(owners[name][1])}, not "
                              f"of {', '.join(schedules)}; drop it or choose --schedule "
                              f"{owners[name][1][0]}")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The validated RunConfig the flags describe (ConfigError naming the fix otherwise)."""
    values: dict[str, Any] = {s.name: getattr(args, s.name) for s in specs() if s.kind is not dict}
    given = given_schedule_params(args)
    refuse_foreign_schedule_params([values["schedule"]], given)
    values["method_params"] = parse_params(args.param)
    values["schedule_params"] = schedule_params_for(values["schedule"], given)
    return validate(RunConfig(**values))


def sweep_lists(args: argparse.Namespace) -> dict[str, list]:
    """{field: values} for every ``--<plural>`` list flag given (sweep-able settings)."""
    return {s.name: parse_sweep_list(s.name, getattr(args, s.sweep)) for s in specs()
            if s.sweep and getattr(args, s.sweep, None) is not None}


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    for s in specs():
        if s.sweep:
            parser.add_argument("--" + s.sweep, metavar="A,B,...",
                                help=f"comma-separated values of {s.flag} to sweep over")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}; e.g. 10")
    return value


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


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def summary_table(run: Run) -> str:
    """One run in full: every ``detail`` metric of the metric table that the run has."""
    from pruning.results import METRICS, time_breakdown_text

    from pruning.methods.base import target_text

    s = run.summary
    lines = [f"run {run.id}  [{run.status}]  {run.label()}",
             f"  {'asked for':<26} {target_text(run.config)}"]
    for metric in METRICS.view("detail"):
        value = metric.value(s)
        if value is not None:
            lines.append(f"  {metric.label:<26} {metric.text(value)}")
    if "latency_device" in s:
        lines.append(f"  {'latency measured on':<26} {s['latency_device']}, batch "
                     f"{s.get('latency_batch_size')}, {s.get('latency_threads')} threads")
    for key, value in (s.get("extras") or {}).items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"  {key:<26} {text}")
    where_time_went = time_breakdown_text(s)
    if where_time_went:
        lines.append(f"  {'time':<26} {where_time_went}")
    if run.error and run.status == "failed":
        lines.append("  error: " + run.error.splitlines()[0])
    return "\n".join(lines)


def run_json(store: RunStore, run: Run, traces: bool = False) -> dict[str, Any]:
    """A run as JSON: config, summary, per-epoch history and, with ``traces``, its traces
    (kind → records in the order written, each ``{"step", **payload}``)."""
    history = [{"epoch": e.get("epoch"), "phase": e.get("phase"),
                "test_acc": e.get("test_acc"), "train_acc": e.get("train_acc"),
                "test_loss": e.get("test_loss"), "target_sparsity": e.get("target_sparsity"),
                "mask_sparsity": e.get("mask_sparsity")} for e in store.epochs(run.id)]
    out = run.to_dict()
    out["history"] = history
    if traces:
        # per kind: a payload may have a "kind" field of its own (SSC's layer kind)
        out["traces"] = {kind: [_payload(record, kind) for record in store.traces(run.id, kind)]
                         for kind in store.trace_kinds(run.id)}
    return out


def _payload(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """A trace row without the kind it is filed under (a payload field of that name stays)."""
    return {k: v for k, v in record.items() if not (k == "kind" and v == kind)}


#: the config columns of ``list``, then every ``list`` metric of the metric table
LIST_CONFIG_COLUMNS = [("id", 22), ("status", 8), ("model", 10), ("method", 11),
                       ("schedule", 10), ("seed", 4), ("target", 7)]


def _follows_schedule(method: str) -> bool:
    try:
        return follows_schedule(method)
    except (KeyError, ValueError):  # a method this version no longer has
        return True


def list_table(runs: list[Run]) -> str:
    from pruning.results import METRICS

    metrics = METRICS.view("list")
    columns = LIST_CONFIG_COLUMNS + [(m.header, max(len(m.header), 8)) for m in metrics]
    header = " ".join(name.ljust(width) for name, width in columns)
    lines = [header, "-" * len(header)]
    from pruning.methods.base import reads_target_sparsity

    for run in runs:
        s, c = run.summary, run.config
        # no schedule on a run whose method ignores it, no target sparsity it did not aim at
        # (`show` gives such a method's own target in words)
        schedule = c.schedule if _follows_schedule(c.method) else "-"
        target = _pct(c.sparsity) if reads_target_sparsity(c) else "own"
        cells = [run.id, run.status, c.model, c.method, schedule, str(c.seed), target]
        cells += [m.text(m.value(s), unit=False).replace("–", "-") for m in metrics]
        lines.append(" ".join(cell[:w].ljust(w) for cell, (_, w) in zip(cells, columns)))
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
    damaged = store.damaged_runs()
    if args.json:
        print(json.dumps([r.to_dict() for r in runs]))
    elif not runs and not damaged:
        print(f"no runs yet in {store.home}; start one with `python -m pruning run`")
    elif runs:
        print(list_table(runs))
    # on stderr, so `--json` output stays one parseable list
    for bad in damaged:
        print(f"damaged: {bad.describe()}", file=sys.stderr)
    newer = [r for r in runs if r.unknown_fields]
    if newer:
        fields = sorted({k for r in newer for k in r.unknown_fields})
        print(f"note: {len(newer)} run(s) hold config fields this version does not know "
              f"({', '.join(fields)}; written by a newer version): kept, not used",
              file=sys.stderr)
    return 0


def cmd_show(args, store: RunStore) -> int:
    run = store.get_run(args.run)
    if args.json:
        print(json.dumps(dict(run_json(store, run, traces=True),
                              file_problems=store.file_problems(run.id))))
        return 0
    print(summary_table(run))
    changed = [f"{k}={v}" for k, v in run.config.to_dict().items() if v != getattr(RunConfig(), k)]
    print("  config: " + (", ".join(changed) if changed else "the default session"))
    if run.unknown_fields:
        print("  config fields this version does not know (kept, not used): "
              + ", ".join(f"{k}={v}" for k, v in run.unknown_fields.items()))
    for problem in store.file_problems(run.id):
        print(f"  files: {problem}")
    print("  epoch  phase      test acc  target   mask")
    for e in store.epochs(run.id):
        print(f"  {e['epoch']:>5}  {str(e.get('phase')):<9}  {_pct(e.get('test_acc')):>8}  "
              f"{_pct(e.get('target_sparsity')):>6}  {_pct(e.get('mask_sparsity')):>6}")
    return 0


def sweep_configs(args) -> list[RunConfig]:
    """The validated grid: every combination of the ``--<plural>`` lists over the flags' config;
    each schedule gets the schedule flags it takes."""
    lists = sweep_lists(args)
    if args.preset == "schedules":
        from pruning.compare import SCHEDULE_COMPARISON as preset

        lists["schedule"] = list(preset["schedule"])
        lists.setdefault("seed", list(preset["seed"]))
        if "sparsity" not in lists and args.sparsity == RunConfig.sparsity:
            lists["sparsity"] = [preset["sparsity"]]  # the measured default; --sparsities overrides
    if args.preset == "tradeoffs":
        from pruning.compare import TRADEOFF_SWEEP as preset

        for field in ("sparsity", "seed"):
            lists.setdefault(field, list(preset[field]))
    values: dict[str, Any] = {s.name: getattr(args, s.name) for s in specs() if s.kind is not dict}
    given = given_schedule_params(args)
    refuse_foreign_schedule_params(lists.get("schedule", [values["schedule"]]), given)
    base = RunConfig(**values, method_params=parse_params(args.param),
                     schedule_params=schedule_params_for(values["schedule"], given))
    if args.preset == "ssc":
        from pruning.methods.ssc import ssc_baseline_configs

        return [validate(c) for seed in lists.get("seed", [base.seed])
                for c in ssc_baseline_configs(validate(base.replace(seed=seed)))]
    return sweep_grid(base, lists, given)


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
    from pruning.compare import report, report_text

    if args.json:  # the runs, then each group's spread over seeds and which differences exceed it
        print(json.dumps({"runs": [run_json(store, r) for r in runs], "comparison": report(runs)}))
    else:
        print(list_table(runs))
        print()
        print(report_text(runs))
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


def check_out_folder(out: str) -> None:
    """Refuse an ``--out`` that is a file or cannot be written into, before anything is written."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder to write into (it is created "
                          f"if missing), e.g. --out exports")
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, so no folder can be made there; "
                          f"choose another folder, e.g. --out exports")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: no permission to write in {existing}; choose a folder "
                          f"you can write, e.g. --out exports")


def cmd_export(args, store: RunStore) -> int:
    from pruning.export import export_run

    store.resolve(args.run)  # an unknown id is refused before the folder is made
    check_out_folder(args.out)
    paths = export_run(store, args.run, args.out, onnx=args.onnx, compact=args.compact)
    for kind, path in paths.items():
        print(f"{kind:<10} {path}")
    return 0


def cmd_bench(args, store: RunStore) -> int:
    if args.app:  # the app in a real browser (pruning.app_bench); the library figures otherwise
        from pruning.app_bench import run_app_benchmark

        try:
            result = run_app_benchmark(runs=args.runs, pages=args.pages)
        except (ImportError, RuntimeError) as exc:
            print(f"error: cannot run the app benchmark: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(result, indent=None if args.json else 2))
        return 0
    from pruning.bench import run_benchmark

    result = run_benchmark(threads=args.threads, quick=args.quick, sweep=args.sweep)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # The console script is `pruning`; `python -m pruning` runs the same parser.
    prog = "pruning" if Path(sys.argv[0]).name == "pruning" else "python -m pruning"
    parser = Parser(prog=prog, description="Pruning Explorer: run and inspect pruning sessions.")
    parser.add_argument("--home", default=None, help="store folder (default: $PRUNING_HOME or ~/.pruning)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one pruning session (defaults: the default session)")
    add_config_flags(run)
    run.add_argument("--name", default=None, type=_checked(check_name),
                     help=f"a label for the run (at most {NAME_MAX} characters, one line)")
    run.add_argument("--download", action="store_true", help="download the dataset if missing")
    run.add_argument("--json", action="store_true", help="print one JSON object at the end")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    lst = sub.add_parser("list", help="list runs with accuracy, sparsity, FLOPs and latency")
    lst.add_argument("--status", choices=["running", "done", "failed", "stopped"])
    lst.add_argument("--limit", type=positive_int, default=None, help="show at most this many")
    lst.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="show one run (id or unique prefix)")
    show.add_argument("run")
    show.add_argument("--json", action="store_true")

    sweep = sub.add_parser("sweep", help="run a grid of sessions (comma-separated lists)")
    add_config_flags(sweep)
    add_sweep_flags(sweep)
    sweep.add_argument("--preset", choices=["schedules", "tradeoffs", "ssc"],
                       help="schedules: one_shot/iterative/agp/one_cycle × seeds 0,1,2 at "
                            "sparsity 0.98 unless --sparsity/--sparsities/--seeds say otherwise; "
                            "tradeoffs: sparsities 0 (dense) to 0.995 × seeds 0,1,2 (the "
                            "accuracy cliff) unless --sparsities/--seeds say otherwise; "
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
    threads = next(s for s in specs() if s.name == "threads")
    bench.add_argument("--threads", type=_reader(threads), default=None,
                       help="torch CPU threads for the measurements (default: torch's own)")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    bench.add_argument("--sweep", action="store_true",
                       help="add sweep_parallel_ratio: a 12-run sweep on a local Ray with 2 CPUs "
                            "over the same sweep in this process (about two minutes more)")
    bench.add_argument("--app", action="store_true",
                       help="measure the app instead: `streamlit run app.py` driven by the "
                            "system Chromium (first session, page loads, widgets, live updates)")
    bench.add_argument("--runs", type=positive_int, default=1000,
                       help="with --app: generated runs in the scratch store (default 1000)")
    bench.add_argument("--pages", type=positive_int, default=None,
                       help="with --app: measure only the first this many pages (default all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    commands = {"run": cmd_run, "list": cmd_list, "show": cmd_show, "sweep": cmd_sweep,
                "export": cmd_export, "bench": cmd_bench}
    try:
        args = build_parser().parse_args(argv)
        from pruning.store import RunStore

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
