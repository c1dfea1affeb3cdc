"""A run's results, described once: the summary type, the metric table and trace kinds.

- ``RunSummary``: what a finished (or stopped/failed) run reports, one name per concept:
  ``params_compact`` is the parameter count after physical removal or the method's own
  architecture change (older runs wrote ``params_pruned`` or ``params_ssc``; they are read back
  under the one name). A method's own results live in ``extras``, typed by the dataclass the
  method declares (``Method.extras``); ``RunSummary.from_dict`` reads every stored version.
- ``METRICS``: one row per metric (key, label, unit, format, better direction, where it is
  shown). The CLI's ``list``/``show``, the Runs page, the run report and Home all read it, so a
  metric added here appears in all of them.
- ``TraceKind``: a kind of per-step record a method writes (``recorder.trace(kind.name, ...)``),
  declared as a constant by that method with its payload's shape.
- ``TIME_PARTS``: the parts of a run's time breakdown, in a run's order.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

# ---- time breakdown ---------------------------------------------------------------------------
TIME_PARTS = {
    "setup": "setup (data, model, store entry)",
    "training": "training steps",
    "method": "the method's own work (re-pruning and mask re-application after each step, "
              "scoring, surgery between phases, attentions, ADMM)",
    "evaluation": "evaluation after each epoch",
    "recording": "recording (epoch rows, mask snapshots)",
    "final_measurement": "final evaluation, FLOPs, compaction, latency and saving",
}


def time_breakdown_text(summary: Mapping[str, Any]) -> str | None:
    """One line: where a run's time went, e.g. "training steps 2.71 s (78 %) · ...", or None."""
    breakdown = summary.get("time_breakdown_s")
    if not breakdown:
        return None
    total = sum(breakdown.values()) or 1.0
    return " · ".join(f"{TIME_PARTS.get(part, part)} {seconds:.2f} s ({seconds / total:.0%})"
                      for part, seconds in breakdown.items())


# ---- trace kinds ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceKind:
    """A kind of trace record: its name in the store and its payload's fields (name → type)."""
    name: str
    payload: Mapping[str, Any]
    description: str = ""

    def check(self, payload: Mapping[str, Any]) -> None:
        """Raise TypeError unless ``payload`` has exactly the declared fields, of their types."""
        if set(payload) != set(self.payload):
            raise TypeError(f"trace {self.name!r}: fields {sorted(payload)} differ from the "
                            f"declared {sorted(self.payload)}")
        for key, kind in self.payload.items():
            _check_value(f"trace {self.name!r} field {key!r}", payload[key], kind)


# ---- the summary ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    """What a run reports. Fractions in [0, 1]; counts per image; None = not measured."""
    test_acc: float | None = None
    test_loss: float | None = None
    test_examples: int | None = None          # images in the test set the accuracy counts
    train_acc: float | None = None
    target_sparsity: float | None = None      # what the schedule asked for at the end
    mask_sparsity: float | None = None        # zeros among prunable weights (None: no mask)
    effective_sparsity: float | None = None   # share of all parameters physically removable
    params_dense: int | None = None           # the model before pruning
    params: int | None = None                 # the final model, masked weights included
    params_nonzero: int | None = None         # kept by the mask and nonzero
    params_compact: int | None = None         # after physical removal / architecture change
    flops_dense: int | None = None
    flops: int | None = None                  # skipping what the mask zeroes
    flops_compact: int | None = None
    epochs_done: int | None = None
    steps_done: int | None = None
    latency_ms: float | None = None           # median, final (compact) model
    latency_p90_ms: float | None = None
    latency_dense_ms: float | None = None
    latency_batch_size: int | None = None
    latency_device: str | None = None
    latency_dtype: str | None = None
    latency_threads: int | None = None
    duration_s: float | None = None           # the whole call, setup included
    time_breakdown_s: dict[str, float] | None = None  # TIME_PARTS → seconds
    compact_note: str | None = None           # why physical removal was not possible
    extras: dict[str, Any] = field(default_factory=dict)  # the method's own results

    def to_dict(self) -> dict[str, Any]:
        """The stored form: the fields that are set, ``extras`` nested."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in out.items() if v is not None and v != {}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSummary":
        """Any stored summary, older layouts included (method keys at the top, old names)."""
        return cls(**upgrade(data))

    def check(self) -> None:
        """Raise TypeError when a field's value is not of its declared type."""
        check_types(self)


#: old names of RunSummary fields, as methods wrote them at the top of the summary
LEGACY_NAMES = {"params_pruned": "params_compact", "params_ssc": "params_compact",
                "flops_pruned": "flops_compact", "flops_ssc": "flops_compact"}
#: old names inside a method's extras
LEGACY_EXTRAS = {"conv_params_ssc": "conv_params"}
#: old method keys that duplicated a summary field (SSC's final accuracy is ``test_acc``)
LEGACY_DUPLICATES = ("acc",)
_FIELDS = tuple(f.name for f in dataclasses.fields(RunSummary))


def upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored summary in today's layout (keyword arguments of ``RunSummary``).

    Keys that are no field (method results of older runs, fields of newer versions) are kept
    in ``extras``; old names map to today's unless today's is already there.
    """
    out: dict[str, Any] = {}
    extras = dict(data.get("extras") or {})
    for key, value in data.items():
        if key == "extras":
            continue
        if key in _FIELDS:
            out[key] = value
        elif key in LEGACY_NAMES:
            out.setdefault(LEGACY_NAMES[key], value)
        elif key not in LEGACY_DUPLICATES:
            extras.setdefault(LEGACY_EXTRAS.get(key, key), value)
    out["extras"] = extras
    return out


def stored_summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """A summary as stored by any version, read back in today's layout (``Run.summary``)."""
    return RunSummary.from_dict(data).to_dict()


def method_extras(declared: type | None, values: Mapping[str, Any], method: str) -> dict[str, Any]:
    """A method's results checked against its declared extras dataclass, as a plain dict.

    Raises TypeError naming the method and the key when a result is undeclared or mistyped.
    """
    if declared is None:
        if values:
            raise TypeError(f"method {method!r} returned results {sorted(values)} but declares "
                            f"no extras dataclass (Method.extras)")
        return {}
    try:
        instance = declared(**values)
    except TypeError as exc:
        raise TypeError(f"method {method!r}: results do not match {declared.__name__}: {exc}") \
            from None
    check_types(instance)
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


def check_types(instance: Any) -> None:
    """Raise TypeError when a dataclass field holds a value outside its annotation."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        _check_value(f"{type(instance).__name__}.{f.name}", getattr(instance, f.name),
                     hints[f.name])


def _check_value(what: str, value: Any, kind: Any) -> None:
    if not _matches(value, kind):
        raise TypeError(f"{what} = {value!r} is not {kind}")


def _matches(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:  # JSON and arithmetic make ints of whole floats
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(kind)
        return isinstance(value, (list, tuple)) and (
            not args or all(_matches(v, args[0]) for v in value))
    if origin is dict:
        args = typing.get_args(kind)
        return isinstance(value, dict) and (not args or all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()))
    return isinstance(value, kind)


# ---- the metric table -------------------------------------------------------------------------
#: how each format renders a number: (the number as text, the unit after it)
FORMATS: dict[str, Callable[[float], tuple[str, str]]] = {
    "pct": lambda v: (f"{v:.1%}", ""),
    "int": lambda v: (f"{int(v):,}", ""),
    "mflops": lambda v: (f"{v / 1e6:.2f}", " M"),
    "ms": lambda v: (f"{v:.2f}", " ms"),
    "s": lambda v: (f"{v:.1f}", " s"),
    "float": lambda v: (f"{v:.4g}", ""),
}
#: where a metric is shown: ``list`` = one row per run (CLI list, Runs history); ``detail`` =
#: one run in full (CLI show, run report, Runs comparison); ``headline`` = Home
VIEWS = ("list", "detail", "headline")


@dataclass(frozen=True)
class Metric:
    """One metric: where it is read from, how it is named, formatted and judged."""
    key: str
    label: str
    unit: str                     # fraction, parameters, FLOPs per image, ms, s, epochs
    fmt: str                      # a key of FORMATS
    better: str | None = None     # "higher", "lower" or None (neither is better)
    help: str = ""
    short: str = ""               # column header of narrow tables (CLI list); default label
    views: tuple[str, ...] = ("detail",)
    compute: Callable[[Mapping[str, Any]], Any] | None = None  # derived from the summary

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise ValueError(f"metric {self.key!r}: format {self.fmt!r} is not one of "
                             f"{', '.join(FORMATS)}")
        if self.better not in (None, "higher", "lower"):
            raise ValueError(f"metric {self.key!r}: better must be higher, lower or None")
        unknown = set(self.views) - set(VIEWS)
        if unknown:
            raise ValueError(f"metric {self.key!r}: unknown view(s) {sorted(unknown)}")

    def value(self, summary: Mapping[str, Any]) -> Any:
        """This metric of a stored summary (None when absent); extras are looked up too."""
        if self.compute is not None:
            return self.compute(summary)
        if self.key in summary:
            return summary[self.key]
        return (summary.get("extras") or {}).get(self.key)

    def text(self, value: Any, unit: bool = True) -> str:
        """``value`` formatted, with its unit unless ``unit`` is False (a header names it);
        "–" for a missing or non-finite value."""
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            return "–"
        number, suffix = FORMATS[self.fmt](value)
        return number + suffix if unit else number

    @property
    def header(self) -> str:
        return self.short or self.label

    @property
    def description(self) -> str:
        """The help text with the better direction, for tooltips."""
        direction = {"higher": "Higher is better.", "lower": "Lower is better."}.get(
            self.better or "", "")
        return " ".join(part for part in (self.help, direction) if part)


class MetricTable:
    """The metrics in display order; ``register`` adds one (duplicates raise)."""

    def __init__(self, metrics: tuple[Metric, ...] = ()):
        self._metrics: dict[str, Metric] = {}
        for metric in metrics:
            self.register(metric)

    def register(self, metric: Metric) -> Metric:
        if metric.key in self._metrics:
            raise ValueError(f"metric {metric.key!r} is already registered")
        self._metrics[metric.key] = metric
        return metric

    def unregister(self, key: str) -> None:
        """Remove a metric (for plug-ins that are unloaded, and tests)."""
        self._metrics.pop(key, None)

    def get(self, key: str) -> Metric:
        return self._metrics[key]

    def view(self, name: str) -> list[Metric]:
        """The metrics shown in view ``name`` (see VIEWS), in table order."""
        return [m for m in self._metrics.values() if name in m.views]

    def __iter__(self) -> Iterator[Metric]:
        return iter(list(self._metrics.values()))

    def __contains__(self, key: object) -> bool:
        return key in self._metrics


def headline_sparsity(summary: Mapping[str, Any]) -> float | None:
    """The mask's sparsity, or for methods that remove channels instead of masking (i-SpaSP,
    SSC) the fraction of parameters physically gone."""
    mask = summary.get("mask_sparsity")
    return mask if mask is not None else summary.get("effective_sparsity")


METRICS = MetricTable((
    Metric("test_acc", "test accuracy", "fraction", "pct", "higher", short="acc",
           help="Accuracy of the final model on the test split.",
           views=("list", "detail", "headline")),
    Metric("target_sparsity", "target sparsity", "fraction", "pct",
           help="What the schedule asked for at the end of training."),
    Metric("sparsity", "sparsity (mask, or parameters removed)", "fraction", "pct",
           short="sparsity", compute=headline_sparsity, views=("list", "headline"),
           help="Zeros among prunable weights under the mask; for methods that remove "
                "channels instead of masking them (i-SpaSP, SSC), the fraction of parameters "
                "removed."),
    Metric("mask_sparsity", "mask sparsity", "fraction", "pct",
           help="Zeros among the prunable weights (first and last layer excluded unless "
                "chosen)."),
    Metric("effective_sparsity", "effective sparsity", "fraction", "pct", short="effective",
           views=("list", "detail"),
           help="Share of all parameters that physically disappear when empty channels are cut "
                "out of the network."),
    Metric("params_dense", "parameters (dense)", "parameters", "int",
           help="Parameters of the model before pruning."),
    Metric("params_nonzero", "nonzero parameters", "parameters", "int", "lower",
           short="nonzero", views=("list", "detail", "headline"),
           help="Parameters kept by the mask and nonzero."),
    Metric("params_compact", "parameters after removal", "parameters", "int", "lower",
           help="Parameters once empty channels are cut out (or after the method's own "
                "architecture change)."),
    Metric("flops_dense", "FLOPs dense", "FLOPs per image", "mflops",
           help="FLOPs of one forward pass of the dense model."),
    Metric("flops", "FLOPs under the mask", "FLOPs per image", "mflops", "lower", short="MFLOPs",
           views=("list", "detail", "headline"),
           help="FLOPs of one forward pass, skipping what the mask zeroes."),
    Metric("flops_compact", "FLOPs after removal", "FLOPs per image", "mflops", "lower",
           help="FLOPs of one forward pass of the physically compacted model."),
    Metric("latency_dense_ms", "latency dense", "ms", "ms",
           help="Median time of one batch through the dense model, measured on this machine."),
    Metric("latency_ms", "latency final", "ms", "ms", "lower", short="lat ms",
           views=("list", "detail"),
           help="Median time of one batch through the final model after physical removal."),
    Metric("latency_p90_ms", "latency final p90", "ms", "ms", "lower",
           help="90th percentile of the same measurement."),
    Metric("epochs_done", "epochs", "epochs", "int", help="Epochs trained."),
    Metric("duration_s", "duration", "s", "s", short="time s", views=("list", "detail", "headline"),
           help="The whole run, setup and final measurement included."),
))
