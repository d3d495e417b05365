"""Name → component registries (timm-style decorator registry).

Every user-facing name (encoder, upsampling mode, skip fusion, loss) resolves
through one of the instances below, never through import strings or eval.
Registries fill themselves lazily by importing the fixed internal modules that
hold the registrations, so a config can be validated without building a model.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import Any

from segkit.errors import UnknownNameError


def _shared_prefix(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def closest_match(name: str, options: list[str]) -> str | None:
    """The option most similar to ``name`` (ties go to the longest common prefix), if any is close."""
    scored = [(difflib.SequenceMatcher(None, name, option).ratio(), _shared_prefix(name, option), option)
              for option in options]
    best = max(scored, default=None)
    return best[2] if best is not None and best[0] >= 0.6 else None


class Registry:
    """A mapping from names to factories with helpful lookup errors."""

    def __init__(self, kind: str, providers: Iterable[str] = ()) -> None:
        self.kind = kind
        self._providers = tuple(providers)
        self._items: dict[str, Callable[..., Any]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``factory`` under ``name`` (names are unique)."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = factory
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., Any]) -> None:
        """Register ``factory`` under ``name`` without a decorator."""
        self.register(name)(factory)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._providers:
                importlib.import_module(module)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered as ``name``; unknown names list the valid ones."""
        self._load()
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: str) -> str:
        """One-line message for an unknown name, with the nearest valid one."""
        valid = self.names()
        close = closest_match(str(name), valid)
        hint = f"did you mean '{close}'? " if close else ""
        return f"unknown {self.kind} '{name}': {hint}valid: {', '.join(valid)}"


ENCODERS = Registry("encoder", ["segkit.models.encoders"])
UPSAMPLERS = Registry("upsampling mode", ["segkit.models.upsample"])
FUSIONS = Registry("skip fusion", ["segkit.models.fusion"])
LOSSES = Registry("loss", ["segkit.engine.losses"])
