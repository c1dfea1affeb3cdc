"""A small named registry, the one place where models, datasets, methods and schedules plug in.

Each registry maps a name to an object (a class or a factory) and, optionally, to a frozen config
dataclass describing that entry's own settings. The app generates its widgets from those config
dataclasses and the CLI validates ``--param key=value`` against them, so adding a method, model,
dataset or schedule means writing one decorated function or class and nothing else.

Registries are filled at import time by decorators, then only read: they are not mutable state
shared between users of the app.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from pruning.config import ConfigError, parse_value, specs

T = TypeVar("T")


class UnknownNameError(ConfigError):
    """An unknown registry key; the message names the valid choices."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    config: type | None  # a frozen dataclass with the entry's own settings, or None
    description: str


class Registry(Generic[T]):
    """``register(name, config=...)`` as a decorator, ``get(name)``, ``names()``; duplicates raise."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, config: type | None = None,
                 description: str | None = None) -> Callable[[T], T]:
        if config is not None and not dataclasses.is_dataclass(config):
            raise TypeError(f"{self.kind} {name!r}: config must be a dataclass")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = description if description is not None else (obj.__doc__ or "").strip()
            self._entries[name] = Entry(name, obj, config, doc)
            return obj

        return decorator

    @contextmanager
    def registered(self, name: str, obj: T, *, config: type | None = None,
                   description: str | None = None) -> Iterator[T]:
        """Register ``obj`` for the duration of a ``with`` block (tests, experiments)."""
        self.register(name, config=config, description=description)(obj)
        try:
            yield obj
        finally:
            self.unregister(name)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and experiments that registered it for a while)."""
        self.entry(name)  # an unknown name raises, naming the choices
        del self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def config_class(self, name: str) -> type | None:
        return self.entry(name).config

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def build_config(config_cls: type | None, params: Mapping[str, Any], owner: str) -> Any:
    """Instantiate an entry's config dataclass from a loose dict (strings from the CLI or a URL,
    or typed values from a stored run).

    Each value is read and checked by its field's description (``pruning.config.specs``: type,
    finiteness, bounds, choices). Unknown keys and bad values raise ValueError (ConfigError)
    with a message naming the fix.
    """
    if config_cls is None:
        if params:
            raise ConfigError(f"{owner} takes no parameters (got: {', '.join(params)})")
        return None
    fields = {s.name: s for s in specs(config_cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(
            f"{owner} has no parameter {', '.join(unknown)}; valid: {', '.join(fields) or 'none'}"
        )
    values = {key: parse_value(fields[key], raw, f"{owner} parameter {key}")
              for key, raw in params.items()}
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}: {exc}") from None
