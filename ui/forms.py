"""Widgets generated from setting descriptions, and RunConfig <-> URL query parameters.

Every setting is described once (``pruning.config.specs``: a RunConfig field's metadata, or a
method's or schedule's own parameter dataclass), and ``setting_widget`` draws it by its kind —
bool → checkbox, a Literal or listed choices → selectbox (with the description's labels),
int/float → number_input (its step and format), tuple → a text field written "1x4", str →
text_input — with the description's help (and bounds) as the tooltip. ``dataclass_widgets`` does
that for a whole parameter dataclass; the Run page draws RunConfig's sections with it too.

The Run page's choices live in the URL (``st.query_params``) so a link reproduces the setup: only
fields that differ from the defaults are written, method settings as ``p.<name>`` and schedule
settings as ``s.<name>``. ``config_from_query`` reads them back by the same descriptions (NaN,
infinity and out-of-bounds values refused) and reports every value it had to ignore, so a bad
link shows an ``st.error`` naming the field and the fix, and the page still opens.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import streamlit as st

from pruning.config import (LEGACY_SCHEDULE_FIELDS, ConfigError, RunConfig, Spec, format_value,
                            parse_value, specs)
from pruning.validation import validate

#: query-parameter prefixes of the method's and the schedule's own settings
PARAM_PREFIX = "p."
SCHEDULE_PREFIX = "s."


def tuple_text(value: Sequence[int]) -> str:
    """(1, 4) → "1x4", the way tuples are typed in the app and the CLI."""
    return format_value(tuple(value))


def parse_tuple(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(",", "x").split("x") if x.strip())
    except ValueError:
        raise ConfigError(f"{what}: write whole numbers separated by x, e.g. 1x4 "
                          f"(got {text!r})") from None


def setting_widget(s: Spec, key: str, *, value: Any = None, options: Sequence | None = None,
                   disabled: bool = False, container: Any = None) -> Any:
    """One widget for setting ``s`` (key ``key``), returning its typed value.

    ``value`` is the starting value when the widget is new (default: the setting's default);
    ``options`` overrides the choices (e.g. the devices this machine has).
    """
    box = container if container is not None else st
    value = s.default if value is None else value
    help_text = s.describe()
    # A widget whose key is already in session state keeps that value; passing a start value
    # too would only make Streamlit log a warning.
    start = (lambda v: {"value": v}) if key not in st.session_state else (lambda v: {})
    choices = list(options if options is not None else s.choices or [])
    if s.kind is bool:
        return box.checkbox(s.label, key=key, help=help_text, disabled=disabled,
                            **start(bool(value)))
    if choices:
        index = choices.index(value) if value in choices else 0
        return box.selectbox(s.label, choices, key=key, help=help_text, disabled=disabled,
                             format_func=lambda c: s.labels.get(c, str(c)),
                             **({"index": index} if key not in st.session_state else {}))
    if s.kind is int:
        return int(box.number_input(s.label, step=int(s.step or 1), key=key, help=help_text,
                                    disabled=disabled, **start(int(value))))
    if s.kind is float:
        return float(box.number_input(s.label, step=s.step, format=s.fmt or "%.4g", key=key,
                                      help=help_text, disabled=disabled, **start(float(value))))
    if s.kind is tuple:
        text = box.text_input(s.label, key=key, disabled=disabled,
                              help=help_text or "whole numbers separated by x, e.g. 1x4",
                              **start(tuple_text(value)))
        return parse_tuple(text, s.label)
    return box.text_input(s.label, key=key, help=help_text, disabled=disabled,
                          **start("" if value is None else str(value)))


def dataclass_widgets(cls: type | None, values: Mapping[str, Any] | None = None, *,
                      key: str, columns: int = 3, choices: Mapping[str, Sequence] | None = None,
                      disabled: bool = False) -> dict[str, Any]:
    """Draw one widget per field of ``cls`` and return {field: typed value}.

    ``values`` overrides the dataclass defaults (e.g. from the URL); ``choices`` gives a field's
    options when the dataclass does not. Tuple fields that cannot be read raise ConfigError.
    """
    if cls is None:
        return {}
    values = dict(values or {})
    fields = specs(cls)
    if not fields:
        return {}
    cols = st.columns(min(columns, len(fields)))
    return {s.name: setting_widget(s, f"{key}.{s.name}", value=values.get(s.name),
                                   options=(choices or {}).get(s.name), disabled=disabled,
                                   container=cols[i % len(cols)])
            for i, s in enumerate(fields)}


def changed_params(cls: type | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """Only the values that differ from the dataclass defaults (keeps configs and URLs short)."""
    if cls is None:
        return {}
    defaults = {s.name: s.default for s in specs(cls)}
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}


# ---- RunConfig <-> query parameters -----------------------------------------------------------
_SPECS = {s.name: s for s in specs(RunConfig)}
_DEFAULTS = RunConfig()


def config_to_query(config: RunConfig) -> dict[str, str]:
    """The fields that differ from the defaults, as strings; method settings as ``p.<name>``,
    schedule settings as ``s.<name>``."""
    out: dict[str, str] = {}
    for name in _SPECS:
        value = getattr(config, name)
        if name == "method_params":
            out.update({PARAM_PREFIX + k: format_value(v) for k, v in sorted(value.items())})
        elif name == "schedule_params":
            out.update({SCHEDULE_PREFIX + k: format_value(v) for k, v in sorted(value.items())})
        elif value != getattr(_DEFAULTS, name):
            out[name] = format_value(value)
    return out


#: settings that are only valid together, judged together
_PAIRS = (("nm_n", "nm_m"), ("window_start", "window_end"))


def config_from_query(query: Mapping[str, Any]) -> tuple[RunConfig, list[str]]:
    """A valid RunConfig from query parameters, and the problems with the values it ignored.

    Keys that are not settings (other widgets' parameters) are left alone; links from before
    schedules had their own parameters (``alpha=``, ``steps=``) still work. Values are applied
    one at a time in field order; one that cannot be read or that makes the config invalid is
    skipped and reported as "name: reason", so the rest of the link still applies.
    """
    def first(value: Any) -> str:
        return str(value[0] if isinstance(value, (list, tuple)) and value else value)

    raw = {k: first(v) for k, v in query.items()}
    method_raw = {k[len(PARAM_PREFIX):]: v for k, v in raw.items() if k.startswith(PARAM_PREFIX)}
    schedule_raw = {k[len(SCHEDULE_PREFIX):]: v for k, v in raw.items()
                    if k.startswith(SCHEDULE_PREFIX)}
    schedule = raw.get("schedule", _DEFAULTS.schedule)
    for old, (readers, _) in LEGACY_SCHEDULE_FIELDS.items():
        if old in raw and schedule in readers:
            schedule_raw.setdefault(old, raw[old])
    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for name, text in raw.items():
        if name in _SPECS and _SPECS[name].kind is not dict:
            try:
                parsed[name] = parse_value(_SPECS[name], text)
            except ConfigError as exc:
                problems.append(str(exc))
    extras = {"method_params": method_raw, "schedule_params": schedule_raw}
    try:  # the common case: everything together is valid
        return validate(_DEFAULTS.replace(**parsed, **extras)), problems
    except ConfigError:
        pass
    # Judged one group at a time, in field order (sparsity before initial_sparsity); settings
    # that are only valid together form one group; the method's and the schedule's settings
    # follow their choice. Passes repeat while some group becomes valid (granularity=nm waits
    # for a sparsity N:M can reach); what never does is reported.
    groups: list[tuple[str, ...]] = []
    for name in _SPECS:
        group = next((g for g in _PAIRS if name in g), (name,))
        present = tuple(n for n in group if n in parsed or (n in extras and extras[n]))
        if present and present not in groups:
            groups.append(present)
    config, pending = _DEFAULTS, groups
    while True:
        errors: dict[tuple[str, ...], str] = {}
        for group in pending:
            try:
                config = validate(config.replace(
                    **{n: parsed[n] if n in parsed else extras[n] for n in group}))
            except ConfigError as exc:
                errors[group] = str(exc)
        if len(errors) == len(pending):  # no group became valid in this pass
            break
        pending = [g for g in pending if g in errors]
    what = {"method_params": "method settings", "schedule_params": "schedule settings"}
    problems += [f"{' and '.join(what.get(n, n) for n in g)}: {errors[g]}" for g in pending]
    return config, problems


def sync_query(config: RunConfig, keep: Sequence[str] = ()) -> None:
    """Write ``config`` into the URL (only when it changed, to avoid needless reruns).

    ``keep`` names other query parameters the page owns (left as they are).
    """
    wanted = config_to_query(config)
    current = st.query_params.to_dict()
    for k in keep:
        if k in current:
            wanted[k] = current[k]
    if current != wanted:
        st.query_params.from_dict(wanted)


def cli_command(config: RunConfig) -> str:
    """The ``python -m pruning run`` line that reproduces ``config`` (non-default flags only)."""
    parts = ["python -m pruning run"]
    for name, text in config_to_query(config).items():
        if name.startswith(PARAM_PREFIX):
            parts.append(f"--param {name[len(PARAM_PREFIX):]}={text}")
        elif name.startswith(SCHEDULE_PREFIX):
            parts.append(f"--{name[len(SCHEDULE_PREFIX):].replace('_', '-')} {text}")
        elif _SPECS[name].kind is bool:
            flag = _SPECS[name].flag
            parts.append(flag if getattr(config, name) else "--no-" + flag[2:])
        else:
            parts.append(f"{_SPECS[name].flag} {text}")
    return " ".join(parts)
