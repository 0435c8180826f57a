"""The one shape of every registry here (configs, backends and their capabilities, models): named things in
registration order, where a taken name is refused and an unknown one is answered with the close matches."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import UserError, did_you_mean

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, kind: str, known: Callable[["Registry"], str]) -> None:
        super().__init__()
        self.kind = kind  # "config", "backend": how messages name an entry
        self._known = known  # the end of the unknown-name message: where to see them all

    def register(self, item: T) -> T:
        if item.name in self:
            raise ValueError(f"{self.kind} {item.name!r} is already registered")
        self[item.name] = item
        return item

    def unregister(self, name: str) -> None:
        """For a test's own entry: the registry as it was before."""
        self.pop(name, None)

    def lookup(self, name: str) -> T:
        if name not in self:
            raise UserError(f"unknown {self.kind} {name!r}: {did_you_mean(name, self)}{self._known(self)}")
        return self[name]
