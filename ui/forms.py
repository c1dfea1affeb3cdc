"""Widgets generated from config dataclasses, and RunConfig <-> URL query parameters.

A method's own settings are a frozen dataclass registered with it
(``pruning.methods.METHODS.config_class(name)``), so the app never hand-writes a form per method:
``dataclass_widgets`` maps each field to a widget by the type of its default — bool → checkbox,
int/float → number_input, str → selectbox when the choices are known (a ``Literal`` annotation
or ``field(metadata={"choices": ...})``) else text_input, tuple → a text field written "1x4". A
field's ``metadata["help"]`` becomes the widget's tooltip.

The Run page's choices live in the URL (``st.query_params``) so a link reproduces the setup: only
fields that differ from the defaults are written, method settings as ``p.<name>``.
``config_from_query`` reads them back and reports every value it had to ignore, so a bad link
shows an ``st.error`` naming the field and the fix, and the page still opens.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Sequence

import streamlit as st

from pruning.config import ConfigError, RunConfig
from pruning.registry import build_config

#: query-parameter prefix of the method's own settings
PARAM_PREFIX = "p."


def _choices(cls: type, f: dataclasses.Field) -> list[Any] | None:
    if "choices" in f.metadata:
        return list(f.metadata["choices"])
    try:
        hint = typing.get_type_hints(cls).get(f.name)
    except Exception:  # unresolvable forward references: fall back to the default's type
        return None
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    return None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def tuple_text(value: Sequence[int]) -> str:
    """(1, 4) → "1x4", the way tuples are typed in the app and the CLI."""
    return "x".join(str(v) for v in value)


def parse_tuple(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(",", "x").split("x") if x.strip())
    except ValueError:
        raise ConfigError(f"{what}: write whole numbers separated by x, e.g. 1x4 "
                          f"(got {text!r})") from None


def _label(name: str) -> str:
    return name.replace("_", " ")


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
    fields = [f for f in dataclasses.fields(cls) if f.init]
    if not fields:
        return {}
    cols = st.columns(min(columns, len(fields)))
    out: dict[str, Any] = {}
    for i, f in enumerate(fields):
        default = _default(f)
        value = values.get(f.name, default)
        options = list((choices or {}).get(f.name) or _choices(cls, f) or [])
        help_text = f.metadata.get("help")
        wkey = f"{key}.{f.name}"
        label = _label(f.name)
        # A widget whose key is already in session state keeps that value; passing a default too
        # would only make Streamlit log a warning.
        fresh = wkey not in st.session_state
        with cols[i % len(cols)]:
            if isinstance(default, bool):
                out[f.name] = st.checkbox(label, **({"value": bool(value)} if fresh else {}),
                                          key=wkey, help=help_text, disabled=disabled)
            elif options:
                index = options.index(value) if value in options else 0
                out[f.name] = st.selectbox(label, options, **({"index": index} if fresh else {}),
                                           key=wkey, help=help_text, disabled=disabled)
            elif isinstance(default, int):
                out[f.name] = int(st.number_input(label, **({"value": int(value)} if fresh else {}),
                                                  step=1, key=wkey, help=help_text,
                                                  disabled=disabled))
            elif isinstance(default, float):
                out[f.name] = float(st.number_input(
                    label, **({"value": float(value)} if fresh else {}), key=wkey,
                    help=help_text, format="%.4g", disabled=disabled))
            elif isinstance(default, tuple):
                text = st.text_input(label, **({"value": tuple_text(value)} if fresh else {}),
                                     key=wkey, disabled=disabled,
                                     help=help_text or "whole numbers separated by x, e.g. 1x4")
                out[f.name] = parse_tuple(text, label)
            else:
                text_value = "" if value is None else str(value)
                out[f.name] = st.text_input(label, **({"value": text_value} if fresh else {}),
                                            key=wkey, help=help_text, disabled=disabled)
    return out


def changed_params(cls: type | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """Only the values that differ from the dataclass defaults (keeps configs and URLs short)."""
    if cls is None:
        return {}
    defaults = {f.name: _default(f) for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}


# ---- RunConfig <-> query parameters -----------------------------------------------------------
_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_DEFAULTS = RunConfig()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return tuple_text(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_to_query(config: RunConfig) -> dict[str, str]:
    """The fields that differ from the defaults, as strings; method settings as ``p.<name>``."""
    out: dict[str, str] = {}
    for name in _FIELDS:
        value = getattr(config, name)
        if name == "method_params":
            for key, param in sorted(value.items()):
                out[PARAM_PREFIX + key] = _query_value(param)
        elif value != getattr(_DEFAULTS, name):
            out[name] = _query_value(value)
    return out


def _parse_field(name: str, raw: str) -> Any:
    kind = type(getattr(_DEFAULTS, name))
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is float:
            return float(raw)
        if kind is int:
            return int(raw)
        return raw
    except ValueError:
        what = {bool: "true or false", int: "a whole number", float: "a number"}.get(kind, "text")
        raise ConfigError(f"{name}={raw!r} is not {what}") from None


_PAIRS = (("nm_n", "nm_m"), ("window_start", "window_end"))


def config_from_query(query: Mapping[str, Any]) -> tuple[RunConfig, list[str]]:
    """A valid RunConfig from query parameters, and the problems with the values it ignored.

    Keys that are not RunConfig fields (other widgets' parameters) are left alone. Values are
    applied one at a time in field order; one that cannot be read or that makes the config
    invalid is skipped and reported as "name: reason", so the rest of the link still applies.
    """
    def first(value: Any) -> str:
        return str(value[0] if isinstance(value, (list, tuple)) and value else value)

    raw = {k: first(v) for k, v in query.items()}
    method_raw = {k[len(PARAM_PREFIX):]: v for k, v in raw.items() if k.startswith(PARAM_PREFIX)}
    plain = {k: v for k, v in raw.items() if k in _FIELDS and k != "method_params"}
    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for name, text in plain.items():
        try:
            parsed[name] = _parse_field(name, text)
        except ConfigError as exc:
            problems.append(str(exc))
    config = _DEFAULTS
    try:  # the common case: everything together is valid
        candidate = RunConfig(**{**_DEFAULTS.to_dict(), **parsed, "method_params": method_raw})
        candidate.validate()
        return _typed_params(candidate), problems
    except ConfigError:
        pass
    # Field order (sparsity before initial_sparsity); pairs that are only valid together are
    # judged together.
    groups: list[tuple[str, ...]] = []
    for name in _FIELDS:
        group = next((g for g in _PAIRS if name in g), (name,))
        present = tuple(n for n in group if n in parsed)
        if present and present not in groups:
            groups.append(present)
    for group in groups:
        candidate = config.replace(**{n: parsed[n] for n in group})
        try:
            candidate.validate()
            config = candidate
        except ConfigError as exc:
            problems.append(f"{' and '.join(group)}: {exc}")
    if method_raw:
        candidate = config.replace(method_params=method_raw)
        try:
            candidate.validate()
            config = candidate
        except ConfigError as exc:
            problems.append(f"method settings: {exc}")
    return _typed_params(config), problems


def _typed_params(config: RunConfig) -> RunConfig:
    """Method params in their typed form (int, float, tuple …) instead of URL strings."""
    if not config.method_params:
        return config
    from pruning.methods import METHODS

    cls = METHODS.config_class(config.method)
    typed = build_config(cls, dict(config.method_params), f"method {config.method!r}")
    return config.replace(method_params={k: getattr(typed, k) for k in config.method_params})


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


def parse_list(text: str, kind: type, what: str) -> list:
    """"0.5, 0.8, 0.9" → [0.5, 0.8, 0.9]; ConfigError naming the field otherwise."""
    try:
        return [kind(x.strip()) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what}: write a comma-separated list of {kind.__name__} values, "
                          f"e.g. 0.5, 0.8, 0.9 (got {text!r})") from None


def cli_command(config: RunConfig) -> str:
    """The ``python -m pruning run`` line that reproduces ``config`` (non-default flags only)."""
    parts = ["python -m pruning run"]
    for name, text in config_to_query(config).items():
        if name.startswith(PARAM_PREFIX):
            parts.append(f"--param {name[len(PARAM_PREFIX):]}={text}")
        elif isinstance(getattr(config, name), bool):
            flag = "--" + name.replace("_", "-")
            parts.append(flag if getattr(config, name) else "--no-" + flag[2:])
        else:
            parts.append(f"--{name.replace('_', '-')} {text}")
    return " ".join(parts)
