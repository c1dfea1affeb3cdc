"""Validation that needs the registries: the layer above ``pruning.config`` (a leaf).

``validate(config)`` is what the CLI, the app's jobs and ``run_session`` call before anything
is written: the config's own checks (``RunConfig.check``: types, NaN/inf, bounds, rules between
fields), then names that must be registered (model, dataset, method, schedule), the method's and
the schedule's own parameters against their registered dataclasses, settings the chosen method
would ignore, and the method's own requirements (``Method.check_config``). It returns the config
with those parameters in their typed form.

``registry(key)`` maps a field's ``registry`` metadata to the registry; it imports the registry's
module on first use, so listing settings (``pruning --help``) needs no torch.
"""
from __future__ import annotations

import importlib
import itertools

from pruning.config import ConfigError, RunConfig, parse_value, specs
from pruning.registry import Registry

#: registry metadata key -> "module:attribute"
REGISTRIES = {"models": "pruning.models:MODELS", "datasets": "pruning.data:DATASETS",
              "methods": "pruning.methods:METHODS", "schedules": "pruning.schedules:SCHEDULES"}


def registry(key: str) -> Registry:
    module, attribute = REGISTRIES[key].split(":")
    return getattr(importlib.import_module(module), attribute)


#: the longest run name accepted (names label runs in one-line tables and pickers)
NAME_MAX = 100


def check_name(name: str | None) -> str | None:
    """A run's label: None (no name) or 1–100 printable characters; ConfigError otherwise."""
    if name is None:
        return None
    text = name.strip()
    if not text:
        raise ConfigError("the run name is empty; give a few words (e.g. --name baseline) or "
                          "leave it out")
    if len(text) > NAME_MAX:
        raise ConfigError(f"the run name is {len(text)} characters long; keep it to {NAME_MAX}")
    if not text.isprintable():
        raise ConfigError("the run name holds control characters (a newline, a tab …); use "
                          "plain text on one line")
    return text


def follows_schedule(method: str) -> bool:
    """Whether ``method`` is driven by the schedule (and reads scope, granularity, …)."""
    return bool(getattr(registry("methods").get(method), "follows_schedule", False))


def validate(config: RunConfig) -> RunConfig:
    """ConfigError naming the problem and the fix, else ``config`` with typed parameters."""
    from pruning.methods import method_config
    from pruning.schedules import schedule_from_config, schedule_params

    config.check()
    for s in specs(RunConfig):
        if s.registry is not None:
            registry(s.registry).entry(getattr(config, s.name))  # UnknownNameError lists choices
    method_cfg = method_config(config)
    if not follows_schedule(config.method):
        defaults = RunConfig()
        ignored = [s for s in specs(RunConfig)
                   if s.follows_schedule and getattr(config, s.name) != getattr(defaults, s.name)]
        if ignored:
            scheduled = [m for m in registry("methods").names() if follows_schedule(m)]
            raise ConfigError(
                f"method {config.method!r} does not follow a schedule, so it ignores "
                f"{', '.join(s.flag for s in ignored)}; drop them or choose a scheduled method "
                f"({', '.join(scheduled)})")
    schedule_cfg = schedule_params(config.schedule, config.schedule_params)
    try:
        schedule_from_config(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        registry("methods").get(config.method).check_config(config, method_cfg)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config.replace(method_params=_typed(method_cfg, config.method_params),
                          schedule_params=_typed(schedule_cfg, config.schedule_params))


def _typed(instance, given: dict) -> dict:
    """The given keys with the values the dataclass instance read from them."""
    return {k: getattr(instance, k) for k in given} if instance is not None else dict(given)


def schedule_params_for(schedule: str, given: dict) -> dict:
    """The entries of ``given`` (settings of any schedule) that ``schedule`` takes."""
    cls = registry("schedules").config_class(schedule) if schedule in registry("schedules") else None
    own = {s.name for s in specs(cls)} if cls is not None else set()
    return {k: v for k, v in given.items() if k in own}


def parse_sweep_list(name: str, text: str, what: str | None = None) -> list:
    """A comma-separated list of values of setting ``name`` (each read and checked by its
    description; registry names must exist); ConfigError if it lists nothing or a bad value."""
    s = next(s for s in specs(RunConfig) if s.name == name)
    what = what or f"--{s.sweep or s.name}"
    items = [x.strip() for x in str(text).replace(";", ",").split(",") if x.strip()]
    if not items:
        raise ConfigError(f"{what} lists no value; give comma-separated values, e.g. "
                          f"{s.default},{s.default}")
    values = [parse_value(s, x, what) for x in items]
    if s.registry is not None:
        for value in values:
            registry(s.registry).entry(value)
    return values


def sweep_grid(base: RunConfig, lists: dict[str, list], schedule_params: dict | None = None
               ) -> list[RunConfig]:
    """Every combination of ``lists`` ({setting: values}) over ``base``, in field order, each
    validated; each schedule gets the entries of ``schedule_params`` it takes (default: the
    base's). A method that follows no schedule runs once per remaining combination: the
    schedule axis and the schedules' settings do not apply to it (a schedule chosen for the
    base is still refused for it)."""
    given = dict(base.schedule_params if schedule_params is None else schedule_params)
    lists = {s.name: list(lists[s.name]) for s in specs(RunConfig) if s.name in lists}
    configs: dict[str, RunConfig] = {}
    for combo in itertools.product(*lists.values()):
        changes = dict(zip(lists, combo))
        schedule = changes.get("schedule", base.schedule)
        changes["schedule_params"] = schedule_params_for(schedule, given)
        if not follows_schedule(changes.get("method", base.method)):
            changes.update(schedule=base.schedule, schedule_params={})
        config = validate(base.replace(**changes))
        configs.setdefault(config.to_json(), config)
    return list(configs.values())
