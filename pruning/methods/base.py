"""What a pruning method is, for the session: a class with a config dataclass and ``run``.

Two shapes of method exist (ARCHITECTURE.md "Interfaces"):

* ``PruningMethod``-style criteria (magnitude, random, SNIP, GraSP, SynFlow, Taylor): a callable
  ``(model, mask, target, batch) -> Mask`` built from a criterion × scope × granularity, driven by
  a schedule during training (``ScheduledPruning`` in ``scheduled.py``).
* Methods that change training itself or the architecture (ASWL, unification, SSC, i-SpaSP): they
  override ``run`` and use ``training.fit`` with their own ``TrainHooks``.

Every method is registered in ``METHODS`` with its own frozen config dataclass (possibly empty)
and receives the validated instance as ``method_config``. It declares what it reports: the
dataclass of its own results (``extras``) and the trace kinds it writes (``traces``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pruning.config import RunConfig
from pruning.masks import Mask
from pruning.registry import Registry, build_config
from pruning.results import TraceKind

def percent(fraction: float) -> str:
    """0.995 → "99.5%", 0.9 → "90%": as many digits as the setting has (a target of 0.995
    must not read "100%")."""
    return f"{100 * fraction:.4g}%"


METHODS: Registry[type] = Registry("method")
"""Registered method classes (filled when ``pruning.methods`` imports its modules)."""


def method_config(config: RunConfig) -> Any:
    """The method's own config dataclass, filled from ``config.method_params`` (ConfigError if
    bad)."""
    return build_config(METHODS.config_class(config.method), dict(config.method_params),
                        f"method {config.method!r}")


@dataclass
class MethodResult:
    """What ``run`` hands back: the final model (maybe transformed), its mask, and the method's
    own results (the run summary's ``extras``: the fields of the method's ``extras`` dataclass)."""
    model: nn.Module
    mask: Mask | None
    summary: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """Base class of registered methods."""

    #: user-facing one-paragraph description (paper, rule, any interpretation)
    description: str = ""
    #: True when the method removes channels physically (parameters/FLOPs really drop)
    changes_architecture: bool = False
    #: the dataclass of the method's own results (``MethodResult.summary``); None: none
    extras: type | None = None
    #: the kinds of trace the method writes (``pruning.results.TraceKind``), with their payloads
    traces: tuple[TraceKind, ...] = ()
    #: True when a schedule drives the method, which then reads the RunConfig fields marked
    #: ``follows_schedule`` (scope, granularity, the schedule …); others must leave them default
    follows_schedule: bool = False

    @classmethod  # noqa: B027 (an optional hook: the default accepts)
    def check_config(cls, config: RunConfig, method_config: Any) -> None:
        """Refuse (ConfigError naming the fix) a setup this method cannot run, before anything
        is written; the default accepts every valid config."""

    @classmethod
    def reads_target_sparsity(cls, config: RunConfig, method_config: Any) -> bool:
        """Whether the run's target sparsity is what this method aimed at (i-SpaSP aims at a
        keep ratio instead; SSC at its density setting when one is given)."""
        return True

    @classmethod
    def target_text(cls, config: RunConfig, method_config: Any) -> str:
        """What this method was asked to reach, in its own terms (a mask sparsity for the
        scheduled criteria; a keep ratio or density for methods that read those instead)."""
        return f"{percent(config.sparsity)} target sparsity"

    def __init__(self, config: RunConfig, method_config: Any):
        self.config = config
        self.method_config = method_config

    @abstractmethod
    def run(self, model: nn.Module, ctx) -> MethodResult:
        """Train/prune ``model`` under ``ctx`` (a pruning.training.RunContext)."""


def target_text(config: RunConfig) -> str:
    """The run's real target in words (``Method.target_text`` of its method): e.g. "90 % target
    sparsity" for magnitude, "keep ratio 0.3 of each block's units" for i-SpaSP, which ignores
    the target sparsity."""
    try:
        cls = METHODS.get(config.method)
        return cls.target_text(config, method_config(config))
    except (KeyError, ValueError):  # a method or settings this version no longer has
        return f"{percent(config.sparsity)} target sparsity"


def reads_target_sparsity(config: RunConfig) -> bool:
    """Whether ``config.sparsity`` is what the run's method aimed at (charts then show it)."""
    try:
        cls = METHODS.get(config.method)
        return cls.reads_target_sparsity(config, method_config(config))
    except (KeyError, ValueError):
        return True
