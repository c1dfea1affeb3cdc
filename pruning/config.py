"""Run configuration: one frozen dataclass that the CLI, the app, URLs and sweeps all fill in.

Every ``RunConfig`` field is described once, in its ``field(metadata=...)`` written by
``setting()``: type (choices as a ``Literal`` annotation, or the name of the registry that holds
them), help text, bounds, the Run form's section and widget hints, and whether sweeps take a list
of it. ``specs()`` turns that into ``Spec`` objects that the CLI flags, the Run form, URL parsing,
sweeps and validation all read, so a setting changes in one place.

This module is a leaf: it imports nothing from ``pruning``. Checks that need the registries
(does model ``x`` exist, are these method parameters valid) live one layer up, in
``pruning.validation``. Method- and schedule-specific settings live in ``method_params`` and
``schedule_params``, validated there against the entry's own registered dataclass.

Stored configs from other versions load: ``from_dict`` moves this version's predecessors' fields
where they now live (``alpha``/``beta``/``steps`` → ``schedule_params``) and keeps fields it does
not know in ``RunConfig.unknown`` instead of failing.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

SECTIONS = ("what to train", "how to prune", "when to prune", "training", "more training")
"""The Run form's sections, in page order; a field with section "" is CLI/URL only."""


class ConfigError(ValueError):
    """Bad user input: the message names the problem and the fix (shown as-is, exit code 2)."""


@dataclass(frozen=True)
class Bounds:
    """An interval of accepted numbers; ``None`` ends are open-ended."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False   # True: low itself is refused
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True

    def text(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{low}, {high}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {low}"
        if self.high is not None:
            return f"{'below' if self.high_open else 'at most'} {high}"
        return "any finite number"


def _number(value: float | None) -> str:
    """Whole numbers in full (a seed bound of 4294967295, not 4.29e+09), others short; an
    open end (None) as nothing."""
    if value is None:
        return ""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return f"{value:g}"


def setting(default: Any = dataclasses.MISSING, *, help: str, section: str = "",
            label: str | None = None, bounds: Bounds | None = None, registry: str | None = None,
            step: float | None = None, fmt: str | None = None,
            labels: Mapping[Any, str] | None = None, sweep: str | None = None,
            when: Mapping[str, Any] | None = None, follows_schedule: bool = False,
            slider: tuple[float, float, float] | None = None, factory: Any = None) -> Any:
    """A dataclass field carrying its description (see ``Spec`` for what each key means)."""
    metadata = {"help": help, "section": section, "label": label, "bounds": bounds,
                "registry": registry, "step": step, "fmt": fmt, "labels": dict(labels or {}),
                "sweep": sweep, "when": dict(when or {}), "follows_schedule": follows_schedule,
                "slider": slider}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Spec:
    """One setting as every layer sees it."""
    name: str
    kind: type                     # bool, int, float, str, tuple or dict
    default: Any
    help: str = ""
    section: str = ""              # Run form section ("" = not drawn by the generic form)
    label: str = ""                # the form's label
    bounds: Bounds | None = None   # numbers outside are refused
    choices: tuple | None = None   # from a Literal annotation
    registry: str | None = None    # choices are the names of this registry (pruning.validation)
    step: float | None = None      # number_input step
    fmt: str | None = None         # number_input format
    labels: Mapping[Any, str] = dataclasses.field(default_factory=dict)  # choice -> shown text
    sweep: str | None = None       # the sweep flag taking a list of this field (e.g. "seeds")
    when: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # drawn only if others are
    follows_schedule: bool = False  # only methods driven by a schedule read it
    slider: tuple[float, float, float] | None = None  # (min, max, step) for sliders

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        """Help text with the accepted values and the default (the CLI's and tooltips' text)."""
        parts = [self.help]
        if self.choices is not None:
            parts.append("one of: " + ", ".join(
                f"{c} ({self.labels[c]})" if c in self.labels else str(c) for c in self.choices))
        if self.bounds is not None:
            parts.append(self.bounds.text())
        if self.kind is not dict:
            parts.append(f"default: {format_value(self.default)}")
        return "; ".join(p for p in parts if p)


def specs(cls: type | None = None) -> tuple[Spec, ...]:
    """The ``Spec`` of every init field of ``cls`` (default RunConfig; also method/schedule
    parameter dataclasses, whose metadata is optional)."""
    cached = _specs(RunConfig if cls is None else cls)
    # a mutable default is the caller's own copy, never the cached one
    return tuple(dataclasses.replace(s, default=dict(s.default)) if isinstance(s.default, dict)
                 else s for s in cached)


@functools.lru_cache(maxsize=None)
def _specs(cls: type) -> tuple[Spec, ...]:
    # Cached per class: a class's fields and annotations do not change, and resolving the
    # annotations (typing.get_type_hints) is slow enough that reading 1,000 stored configs
    # spent most of a page's time here. Spec is frozen; ``specs`` copies dict defaults.
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation this module cannot resolve: fall back to the defaults' types
        hints = {}
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("internal"):
            continue
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else None)
        hint = hints.get(f.name)
        choices = None
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
        elif "choices" in f.metadata:  # method config dataclasses may list choices this way
            choices = tuple(f.metadata["choices"])
        kind = type(choices[0]) if choices else type(default) if default is not None else str
        meta = {k: v for k, v in f.metadata.items()
                if k in Spec.__dataclass_fields__ and k not in ("name", "kind", "default", "choices")}
        meta["label"] = meta.get("label") or f.name.replace("_", " ")
        out.append(Spec(name=f.name, kind=kind, default=default, choices=choices, **meta))
    return tuple(out)


def spec(name: str, cls: type | None = None) -> Spec:
    return next(s for s in specs(cls) if s.name == name)


# ---- reading and checking one value ----------------------------------------------------------
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a finite number",
               tuple: "whole numbers separated by x (e.g. 1x4)", str: "text"}


def format_value(value: Any) -> str:
    """The way values are written in URLs, flags and messages (tuples as 1x4, floats short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_value(s: Spec, raw: Any, what: str | None = None) -> Any:
    """``raw`` (a string from a flag, a URL or ``-p``; or an already typed value) as ``s.kind``,
    then ``check_value``. ConfigError names the setting, the problem and an example."""
    what = what or s.name
    value = raw
    if isinstance(raw, str) and s.kind is not str:
        text = raw.strip()
        try:
            if s.kind is bool:
                if text.lower() not in _TRUE + _FALSE:
                    raise ValueError(text)
                value = text.lower() in _TRUE
            elif s.kind is int:
                value = int(text)
            elif s.kind is float:
                value = float(text)
            elif s.kind is tuple:
                value = tuple(int(x) for x in text.replace(",", "x").split("x"))
            else:
                raise ValueError(text)
        except ValueError:
            raise ConfigError(f"{what}: cannot read {raw!r} as {_KIND_WORDS.get(s.kind, 'a value')}"
                              f"; e.g. {format_value(s.default)}") from None
    elif s.kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        value = float(raw)
    elif s.kind is tuple and isinstance(raw, list):
        value = tuple(raw)
    check_value(s, value, what)
    return value


def check_value(s: Spec, value: Any, what: str | None = None) -> None:
    """Type, finiteness, bounds and choices of one value (ConfigError naming the fix)."""
    what = what or s.name
    example = f"e.g. {format_value(s.default)}" if s.kind is not dict else ""
    wrong_type = (not isinstance(value, s.kind) or (s.kind is not bool and isinstance(value, bool))
                  or (s.kind is int and isinstance(value, float)))
    if s.kind is float and isinstance(value, int) and not isinstance(value, bool):
        wrong_type = False
    if wrong_type:
        raise ConfigError(f"{what} must be {_KIND_WORDS.get(s.kind, s.kind.__name__)}, got "
                          f"{value!r}; {example}")
    if s.kind is float and not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value}; {example}")
    if s.choices is not None and value not in s.choices:
        raise ConfigError(f"{what} must be one of {', '.join(map(format_value, s.choices))}, "
                          f"got {format_value(value)}")
    if s.bounds is not None and s.kind in (int, float) and value not in s.bounds:
        raise ConfigError(f"{what} must be {s.bounds.text()}, got {format_value(value)}; {example}")


# ---- the run configuration -------------------------------------------------------------------
_NATIVE = {0: "native"}
_UNIT = Bounds(0.0, 1.0)

#: Fields of earlier versions that now live in ``schedule_params``: field -> (the schedules
#: that read it then, its default then). ``from_dict`` moves non-default values of the
#: schedules that read them; the others had no effect and are dropped.
LEGACY_SCHEDULE_FIELDS: Mapping[str, tuple[tuple[str, ...], Any]] = {
    "alpha": (("one_cycle",), 14.0), "beta": (("one_cycle",), 5.0),
    "steps": (("iterative", "iterative_geometric"), 3)}


@dataclass(frozen=True)
class RunConfig:
    # what to train
    model: str = setting("small_cnn", help="the network to prune", section="what to train",
                         registry="models", sweep="models")
    dataset: str = setting("digits", help="digits ships with the app; the others need their "
                           "files (python -m pruning run --download)", section="what to train",
                           registry="datasets")
    image_size: Literal[0, 8, 16, 28, 32] = setting(
        0, help="input size in pixels; 0 = the dataset's native size (digits can be upsampled)",
        section="what to train", label="image size (px)", labels=_NATIVE)
    channels: Literal[0, 1, 3] = setting(
        0, help="input channels; 0 = native, 3 repeats a grey image over RGB", section="what to "
        "train", labels=_NATIVE)
    width: float = setting(1.0, help="width multiplier of models that have one (vgg, mlp)",
                           section="what to train", label="width multiplier",
                           bounds=Bounds(0.0, 16.0, low_open=True), step=0.25)
    # how to prune
    method: str = setting("magnitude", help="the pruning method (its own settings: -p key=value)",
                          section="how to prune", registry="methods", sweep="methods")
    scope: Literal["global", "layerwise"] = setting(
        "global", help="global: one threshold over all layers; layerwise: every layer pruned to "
        "the same sparsity", section="how to prune", follows_schedule=True)
    granularity: Literal["unstructured", "nm", "channel"] = setting(
        "unstructured", help="unstructured: single weights; nm: N of every M kept; channel: "
        "whole output channels", section="how to prune", follows_schedule=True)
    nm_n: int = setting(2, help="N:M pattern: weights kept per group", section="how to prune",
                        label="N (kept)", bounds=Bounds(1, 64), step=1,
                        when={"granularity": "nm"}, follows_schedule=True)
    nm_m: int = setting(4, help="N:M pattern: group size", section="how to prune",
                        label="M (group)", bounds=Bounds(2, 64), step=1,
                        when={"granularity": "nm"}, follows_schedule=True)
    prune_every: int = setting(1, help="re-prune every k optimizer steps",
                               section="how to prune", label="re-prune every (steps)",
                               bounds=Bounds(1, 100_000), step=1, follows_schedule=True)
    prune_first_last: bool = setting(
        False, help="also prune the first and last layer (off by default: they are small and "
        "pruning them costs much accuracy)", section="how to prune",
        label="also prune the first and last layer")
    method_params: dict = setting(help="the method's own settings (its registered dataclass)",
                                  factory=dict)
    # when to prune
    schedule: str = setting("one_cycle", help="how the target sparsity moves over training",
                            section="when to prune", registry="schedules", sweep="schedules",
                            follows_schedule=True)
    schedule_params: dict = setting(help="the schedule's own settings (its registered dataclass)",
                                    factory=dict, follows_schedule=True)
    sparsity: float = setting(0.9, help="fraction of the prunable weights set to zero",
                              section="when to prune", label="target sparsity",
                              bounds=Bounds(0.0, 1.0, high_open=True), step=0.05, fmt="%.3f",
                              sweep="sparsities")
    initial_sparsity: float = setting(0.0, help="sparsity before the schedule starts (at most "
                                      "the target)", section="when to prune", bounds=_UNIT,
                                      step=0.05, fmt="%.3f")
    window_start: float = setting(-1.0, help="start of the pruning window as a fraction of "
                                  "training; -1 with window_end -1 = the schedule's default",
                                  bounds=Bounds(-1.0, 1.0), follows_schedule=True)
    window_end: float = setting(-1.0, help="end of the pruning window (fraction of training)",
                                bounds=Bounds(-1.0, 1.0), follows_schedule=True)
    # how to train
    epochs: int = setting(12, help="training epochs", section="training",
                          bounds=Bounds(1, 1000), step=1)
    batch_size: int = setting(64, help="examples per optimizer step", section="more training",
                              label="batch size", bounds=Bounds(1, 65_536), step=16)
    optimizer: Literal["adam", "sgd"] = setting("adam", help="the optimizer",
                                                section="more training")
    lr: float = setting(3e-3, help="learning rate", section="more training",
                        label="learning rate", bounds=Bounds(0.0, 10.0, low_open=True),
                        step=1e-3, fmt="%.4g")
    momentum: float = setting(0.9, help="SGD momentum", section="more training",
                              label="momentum (SGD)", bounds=Bounds(0.0, 1.0, high_open=True),
                              step=0.05)
    weight_decay: float = setting(0.0, help="L2 weight decay", section="more training",
                                  label="weight decay", bounds=Bounds(0.0, 1.0), step=1e-4,
                                  fmt="%.2g")
    lr_schedule: Literal["cosine", "constant", "step"] = setting(
        "cosine", help="how the learning rate moves over training", section="more training",
        label="LR schedule")
    seed: int = setting(0, help="random seed (data order, initialisation, random pruning)",
                        section="training", bounds=Bounds(0, 2 ** 32 - 1), step=1, sweep="seeds")
    device: Literal["auto", "cpu", "cuda", "mps"] = setting(
        "auto", help="auto: GPU when there is one, else CPU", section="training")
    threads: int = setting(0, help="CPU intra-op threads; 0 = auto (1 for small models)",
                           bounds=Bounds(0, 256))
    snapshots: int = setting(20, help="mask snapshots kept per run (for the Mask evolution "
                             "page)", section="more training", label="mask snapshots",
                             bounds=Bounds(0, 1000), step=5)
    max_train_samples: int = setting(0, help="use at most this many training examples; 0 = all",
                                     section="more training",
                                     label="max training samples (0 = all)",
                                     bounds=Bounds(0, 10_000_000), step=1000)
    #: fields of a stored config that this version does not know, kept as they were
    unknown: dict = field(default_factory=dict, compare=False, repr=False,
                          metadata={"internal": True})

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        del out["unknown"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """A config from a stored dict of any version; never fails on unknown fields.

        Fields of earlier versions are migrated (``LEGACY_SCHEDULE_FIELDS``); fields this
        version does not know (a newer version's) are kept in ``unknown``, for the caller to
        report. Values are not validated here: a stored run must load even if today's rules
        would refuse it.
        """
        known = {s.name for s in specs(cls)}
        data = dict(data)
        schedule = data.get("schedule", cls.schedule)
        legacy = {k: data.pop(k) for k in list(data)
                  if k in LEGACY_SCHEDULE_FIELDS and k not in known}
        params = dict(data.get("schedule_params") or {})
        for key, value in legacy.items():
            readers, old_default = LEGACY_SCHEDULE_FIELDS[key]
            if schedule in readers and value != old_default:
                params.setdefault(key, value)
        if legacy:
            data["schedule_params"] = params
        unknown = {k: data.pop(k) for k in list(data) if k not in known}
        return cls(**data, unknown=unknown)

    def check(self) -> None:
        """ConfigError for anything wrong that this config alone shows (types, NaN/inf,
        bounds, choices, rules between fields). ``pruning.validation.validate`` adds the
        checks that need the registries."""
        for s in specs(type(self)):
            if s.kind is not dict:
                check_value(s, getattr(self, s.name))
            elif not isinstance(getattr(self, s.name), dict):
                raise ConfigError(f"{s.name} must be a mapping of name to value")
        if self.initial_sparsity > self.sparsity:
            raise ConfigError(f"initial sparsity must be at most the target sparsity "
                              f"({self.sparsity:g}), got {self.initial_sparsity:g}")
        if self.granularity == "nm":
            if not self.nm_n < self.nm_m:
                raise ConfigError(f"N:M needs 0 < N < M, got {self.nm_n}:{self.nm_m}; "
                                  f"e.g. --nm-n 2 --nm-m 4")
            most = 1 - self.nm_n / self.nm_m
            if self.sparsity > most + 1e-9:
                raise ConfigError(
                    f"{self.nm_n}:{self.nm_m} sparsity keeps {self.nm_n} of every {self.nm_m} "
                    f"weights, so it reaches at most {most:.0%}; lower --sparsity to {most:g} "
                    f"or choose a sparser pattern (e.g. --nm-n 1)")
        if not self.default_window():
            start, end = self.window_start, self.window_end
            if not 0.0 <= start <= end <= 1.0:
                raise ConfigError(f"schedule window must satisfy 0 <= start <= end <= 1 (or "
                                  f"both -1 for the schedule's default), got [{start}, {end}]")

    def default_window(self) -> bool:
        """True when the schedule's own default pruning window applies."""
        return self.window_start == -1.0 and self.window_end == -1.0
