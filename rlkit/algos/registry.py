"""Registries: where a family of algorithm parts (advantage estimators, loss aggregations, KL
estimators) names its members. One registration names a part and says what it needs; the config's
allowed values, the dispatch and the error for an unknown name all come from it (verl's idea in
`core_algos.py`). Importing a registry imports no torch, so loading a recipe stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    traits: dict[str, Any] = field(default_factory=dict)  # what the family's caller needs to know (e.g. needs_critic)

    def __getattr__(self, trait: str) -> Any:
        try:
            return self.traits[trait]
        except KeyError:
            raise AttributeError(trait) from None


class Registry:
    """Named functions of one family. `key` is the config key whose value picks one."""

    def __init__(self, family: str, key: str):
        self.family, self.key = family, key
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **traits: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: `@ADVANTAGE_ESTIMATORS.register("grpo", per_token=False)` over the function."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.family} '{name}' is registered twice")
            self._entries[name] = Entry(name, fn, traits)
            return fn

        return add

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.family} '{name}' for {self.key} (expected one of {', '.join(self._entries)})") from None

    def check(self, name: str) -> str:
        """A pydantic validator's body: the name, if registered."""
        self.get(name)
        return name
