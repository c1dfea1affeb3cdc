"""Run configuration: one frozen dataclass that the CLI, the app and sweeps all fill in.

``RunConfig`` holds everything that determines a run. Method- and schedule-specific settings that
only some entries have live in ``method_params`` (validated against the method's own registered
config dataclass); the schedule's few parameters are plain fields because every schedule page and
flag needs them. ``validate()`` checks everything that can be checked without touching the store,
so bad input is refused before a run row is written.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Bad user input: the message names the problem and the fix (shown as-is, exit code 2)."""


@dataclass(frozen=True)
class RunConfig:
    # what to train
    model: str = "small_cnn"
    dataset: str = "digits"
    image_size: int = 0        # 0 = the dataset's native size; digits can be upsampled to 16 or 32
    channels: int = 0          # 0 = native; 3 repeats a grey image over RGB for CIFAR-style models
    width: float = 1.0         # width multiplier for models that have one (vgg, mlp)
    # how to prune
    method: str = "magnitude"
    scope: str = "global"              # global | layerwise
    granularity: str = "unstructured"  # unstructured | nm | channel
    nm_n: int = 2
    nm_m: int = 4
    prune_first_last: bool = False
    method_params: dict = field(default_factory=dict)
    # when to prune
    schedule: str = "one_cycle"
    sparsity: float = 0.9
    initial_sparsity: float = 0.0
    window_start: float = -1.0  # -1 = the schedule's default window
    window_end: float = -1.0
    alpha: float = 14.0         # one_cycle
    beta: float = 5.0           # one_cycle
    steps: int = 3              # iterative / iterative_geometric
    prune_every: int = 1        # re-prune every k optimizer steps
    # how to train
    epochs: int = 12
    batch_size: int = 64
    optimizer: str = "adam"    # sgd | adam
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # constant | cosine | step
    seed: int = 0
    device: str = "auto"       # auto | cpu | cuda | mps
    threads: int = 0           # CPU intra-op threads; 0 = auto (1 for small models, see session)
    snapshots: int = 20        # mask snapshots kept per run
    max_train_samples: int = 0  # 0 = all; lets big datasets run in seconds

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**data)

    def validate(self) -> None:
        """Raise ConfigError for anything wrong that does not need the data files."""
        from pruning import data, methods, models, schedules  # late: registries fill on import

        for kind, registry, name in (("model", models.MODELS, self.model),
                                     ("dataset", data.DATASETS, self.dataset),
                                     ("method", methods.METHODS, self.method),
                                     ("schedule", schedules.SCHEDULES, self.schedule)):
            if name not in registry:
                raise ConfigError(
                    f"unknown {kind} {name!r}; choose one of: {', '.join(registry.names())}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"sparsity must be in [0, 1), got {self.sparsity}; e.g. --sparsity 0.9")
        if not 0.0 <= self.initial_sparsity <= self.sparsity:
            raise ConfigError(
                f"initial sparsity must be in [0, sparsity={self.sparsity}], got {self.initial_sparsity}")
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs}; e.g. --epochs 10")
        if self.batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.prune_every <= 0:
            raise ConfigError(f"prune_every must be a positive number of steps, got {self.prune_every}")
        if self.scope not in ("global", "layerwise"):
            raise ConfigError(f"unknown scope {self.scope!r}; choose global or layerwise")
        if self.granularity not in ("unstructured", "nm", "channel"):
            raise ConfigError(
                f"unknown granularity {self.granularity!r}; choose unstructured, nm or channel")
        if self.granularity == "nm" and not 0 < self.nm_n < self.nm_m:
            raise ConfigError(f"N:M needs 0 < N < M, got {self.nm_n}:{self.nm_m}")
        if self.granularity == "nm" and self.sparsity > 1 - self.nm_n / self.nm_m + 1e-9:
            raise ConfigError(
                f"{self.nm_n}:{self.nm_m} sparsity keeps {self.nm_n} of every {self.nm_m} weights, so "
                f"it reaches at most {1 - self.nm_n / self.nm_m:.0%}; lower --sparsity to "
                f"{1 - self.nm_n / self.nm_m:g} or choose a sparser pattern (e.g. --nm-n 1)")
        if not (0.0 < self.alpha <= 100.0 and -50.0 <= self.beta <= 50.0):
            raise ConfigError(f"one_cycle needs 0 < alpha <= 100 and -50 <= beta <= 50, got "
                              f"alpha={self.alpha}, beta={self.beta} (the paper uses 14 and 5)")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose sgd or adam")
        if self.lr_schedule not in ("constant", "cosine", "step"):
            raise ConfigError(f"unknown lr schedule {self.lr_schedule!r}; choose constant, cosine or step")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"unknown device {self.device!r}; choose auto, cpu, cuda or mps")
        if self.image_size not in (0, 8, 16, 28, 32):
            raise ConfigError(f"image size must be 0 (native), 8, 16, 28 or 32, got {self.image_size}")
        if self.channels not in (0, 1, 3):
            raise ConfigError(f"channels must be 0 (native), 1 or 3, got {self.channels}")
        if self.threads < 0:
            raise ConfigError(f"threads must be 0 (auto) or a positive count, got {self.threads}")
        if self.width <= 0:
            raise ConfigError(f"width multiplier must be positive, got {self.width}")
        if not (self.window_start == -1.0 and self.window_end == -1.0):
            if not 0.0 <= self.window_start < self.window_end <= 1.0 and not (
                    self.window_start == self.window_end and 0 <= self.window_start <= 1):
                raise ConfigError(
                    f"schedule window must satisfy 0 <= start <= end <= 1, got "
                    f"[{self.window_start}, {self.window_end}]")
        try:
            methods.method_config(self)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            schedules.schedule_from_config(self)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
