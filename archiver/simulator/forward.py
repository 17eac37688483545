"""A simulator's attributes kept by its parts, so a test can say ``sim.tz = ...``."""

from __future__ import annotations

from typing import Generic, TypeVar, cast, overload

T = TypeVar("T")


class Forward(Generic[T]):
    """An attribute of the simulator kept by one of its parts: ``sim.tz`` is ``sim.store.tz``."""

    def __init__(self, path: str) -> None:
        self.parts, _, self.name = path.rpartition(".")

    def _holder(self, sim: object) -> object:
        for part in self.parts.split("."):
            sim = getattr(sim, part)
        return sim

    @overload
    def __get__(self, sim: None, owner: type) -> Forward[T]: ...
    @overload
    def __get__(self, sim: object, owner: type | None = None) -> T: ...
    def __get__(self, sim: object, owner: type | None = None) -> T | Forward[T]:
        if sim is None:
            return self
        return cast(T, getattr(self._holder(sim), self.name))

    def __set__(self, sim: object, value: T) -> None:
        setattr(self._holder(sim), self.name, value)
