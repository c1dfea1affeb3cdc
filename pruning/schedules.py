"""Sparsity schedules: pure functions of training progress t ∈ [0, 1] → target sparsity.

Every schedule takes the final sparsity s_f, an initial sparsity s_i and a window [start, end]
of training progress: before the window the target is s_i, after it s_f, inside it t is
rescaled to [0, 1] and the schedule's own curve applies (METHODS.md §1).

- one_shot: s_f at once (the window's start is the jump; start = 0 prunes at initialisation).
- iterative: n equal steps, s_i + (s_f − s_i)/n · ceil(t·n).
- iterative_geometric: lottery-ticket style, a fixed fraction of the remaining weights at each of
  n levels, so density falls geometrically (1 − (1 − r)^k).
- agp: Zhu & Gupta, "To prune, or not to prune" (arXiv 1710.01878): s_f + (s_i − s_f)(1 − t)³.
- one_cycle: Hubens et al., "One-Cycle Pruning" (arXiv 2107.02086):
  s_i + (s_f − s_i)(1 + e^(−α+β)) / (1 + e^(−α·t+β)), α = 14, β = 5 (the author's library uses
  β = 6; both are exposed).
- linear, cosine: plain contrasts.

Schedules are frozen dataclasses, so they carry no state and can be shared between sessions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from pruning.config import Bounds, RunConfig, setting
from pruning.registry import Registry, build_config

SCHEDULES: Registry[type] = Registry("schedule")
"""Schedule classes, each registered with its own parameter dataclass (or none): the CLI flags,
the Run form, URLs and the Schedules page's sliders are generated from that dataclass."""


@dataclass(frozen=True)
class Schedule:
    """Base: window handling; subclasses define ``curve(u)`` for u ∈ [0, 1] inside the window.

    ``params`` is an instance of the schedule's registered parameter dataclass (None if it has
    none); only the schedule's own ``curve`` reads it.
    """
    final: float = 0.9
    initial: float = 0.0
    start: float = 0.0
    end: float = 1.0
    params: Any = None

    default_window = (0.0, 1.0)

    def __post_init__(self):
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"schedule window must satisfy 0 <= start <= end <= 1, "
                             f"got [{self.start}, {self.end}]")
        if not 0.0 <= self.initial <= self.final <= 1.0:
            raise ValueError(f"need 0 <= initial ({self.initial}) <= final ({self.final}) <= 1")

    def __call__(self, progress: float) -> float:
        if progress >= self.end:
            return self.final
        if progress < self.start:
            return self.initial
        u = (progress - self.start) / (self.end - self.start)
        value = self.curve(u)
        # Guard against float round-off pushing a value outside [initial, final].
        return min(max(value, self.initial), self.final)

    def curve(self, u: float) -> float:  # overridden by every registered schedule
        return self.final

    def span(self) -> float:
        return self.final - self.initial


@dataclass(frozen=True)
class StepsParams:
    steps: int = setting(3, help="number of pruning steps (levels)", bounds=Bounds(1, 1000),
                         step=1, slider=(1, 10, 1))


@dataclass(frozen=True)
class OneCycleParams:
    alpha: float = setting(14.0, help="steepness α of the logistic (the paper: 14)",
                           label="α (steepness)", bounds=Bounds(0.0, 100.0, low_open=True),
                           step=1.0, slider=(1.0, 30.0, 0.5))
    beta: float = setting(5.0, help="offset β of the logistic (the paper: 5; the author's "
                          "library: 6)", label="β (offset)", bounds=Bounds(-50.0, 50.0),
                          step=0.5, slider=(0.0, 15.0, 0.5))


@SCHEDULES.register("one_shot", description="All of the target at once, at the window's start.")
@dataclass(frozen=True)
class OneShot(Schedule):
    start: float = 0.5
    end: float = 0.5
    default_window = (0.5, 0.5)

    def __call__(self, progress: float) -> float:
        return self.final if progress >= self.start else self.initial


@SCHEDULES.register("iterative", config=StepsParams, description="n equal steps: s_i + (s_f − s_i)/n · ceil(t·n).")
@dataclass(frozen=True)
class Iterative(Schedule):
    start: float = 0.2
    end: float = 1.0
    params: StepsParams = StepsParams()
    default_window = (0.2, 1.0)

    def curve(self, u: float) -> float:
        steps = self.params.steps
        return self.initial + self.span() / steps * math.ceil(u * steps)


@SCHEDULES.register("iterative_geometric", config=StepsParams,
                    description="Lottery-ticket levels: the same fraction of the remaining "
                                "weights pruned at each of n levels.")
@dataclass(frozen=True)
class IterativeGeometric(Schedule):
    start: float = 0.2
    end: float = 1.0
    params: StepsParams = StepsParams()
    default_window = (0.2, 1.0)

    def curve(self, u: float) -> float:
        steps = self.params.steps
        level = math.ceil(u * steps)
        # density after k levels: d_i · (d_f/d_i)^(k/n), i.e. a fixed fraction r per level
        d_i, d_f = 1.0 - self.initial, 1.0 - self.final
        if d_i == 0.0:  # everything is pruned from the start; nothing left to divide
            return 1.0
        return 1.0 - d_i * (d_f / d_i) ** (level / steps)


@SCHEDULES.register("agp", description="Zhu & Gupta's cubic: s_f + (s_i − s_f)(1 − t)³.")
@dataclass(frozen=True)
class AGP(Schedule):
    start: float = 0.2
    end: float = 1.0
    default_window = (0.2, 1.0)

    def curve(self, u: float) -> float:
        return self.final + (self.initial - self.final) * (1.0 - u) ** 3


@SCHEDULES.register("one_cycle", config=OneCycleParams,
                    description="Hubens et al.'s logistic: s_i + (s_f − s_i)(1 + e^(−α+β)) / "
                                "(1 + e^(−αt+β)); α = 14, β = 5.")
@dataclass(frozen=True)
class OneCycle(Schedule):
    params: OneCycleParams = OneCycleParams()  # α <= 0 (refused) would make the curve flat

    def curve(self, u: float) -> float:
        a, b = self.params.alpha, self.params.beta
        return self.initial + self.span() * (1.0 + math.exp(-a + b)) / (1.0 + math.exp(-a * u + b))


@SCHEDULES.register("linear", description="A straight line from s_i to s_f (a contrast).")
@dataclass(frozen=True)
class Linear(Schedule):
    def curve(self, u: float) -> float:
        return self.initial + self.span() * u


@SCHEDULES.register("cosine", description="Half a cosine from s_i to s_f (a contrast).")
@dataclass(frozen=True)
class Cosine(Schedule):
    def curve(self, u: float) -> float:
        return self.initial + self.span() * 0.5 * (1.0 - math.cos(math.pi * u))


def schedule_params(name: str, params: Mapping[str, Any] | None = None) -> Any:
    """The schedule's parameter dataclass filled from ``params`` (strings or typed values);
    None for a schedule without parameters. ConfigError naming the fix if bad."""
    return build_config(SCHEDULES.config_class(name), dict(params or {}), f"schedule {name!r}")


def make_schedule(name: str, *, final: float, initial: float = 0.0, start: float | None = None,
                  end: float | None = None, params: Mapping[str, Any] | None = None) -> Schedule:
    """Build a registered schedule; ``start``/``end`` None means the schedule's default window;
    ``params`` are the schedule's own settings (see ``schedule_params``)."""
    cls = SCHEDULES.get(name)
    kwargs: dict = {"final": final, "initial": initial}
    if start is not None:
        kwargs["start"] = start
        if end is None and cls.default_window[0] == cls.default_window[1]:
            kwargs["end"] = start  # a jump schedule: a start alone moves the jump
    if end is not None:
        kwargs["end"] = end
    typed = schedule_params(name, params)
    if typed is not None:
        kwargs["params"] = typed
    return cls(**kwargs)


def schedule_from_config(config: RunConfig) -> Schedule:
    """The schedule a RunConfig asks for (window -1 = default)."""
    custom = not config.default_window()
    return make_schedule(config.schedule, final=config.sparsity, initial=config.initial_sparsity,
                         start=config.window_start if custom else None,
                         end=config.window_end if custom else None,
                         params=config.schedule_params)

