"""Loading of installed plug-ins (services, venues) from their entry-point groups.

One loader so every group checks its objects' type the same way and names the culprit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TypeVar

T = TypeVar("T")


def load_group(group: str, kind: type[T]) -> dict[str, T]:
    """Every object registered under ``group``, by name; each must be a ``kind``."""
    out: dict[str, T] = {}
    for ep in entry_points(group=group):
        obj = ep.load()
        if not isinstance(obj, kind):
            raise TypeError(f"entry point {ep.name} ({ep.value}) is not a {kind.__name__}")
        out[ep.name] = obj
    return out


def group_names(group: str) -> tuple[str, ...]:
    """The names registered under ``group``, sorted, without importing any of them."""
    return tuple(sorted({ep.name for ep in entry_points(group=group)}))


def load_one(group: str, name: str, kind: type[T]) -> T | None:
    """The object registered as ``name`` under ``group`` (only that one is imported), or None."""
    for ep in entry_points(group=group, name=name):
        obj = ep.load()
        if not isinstance(obj, kind):
            raise TypeError(f"entry point {ep.name} ({ep.value}) is not a {kind.__name__}")
        return obj
    return None


COMMANDS_GROUP = "ofx.commands"


@dataclass(frozen=True)
class Command:
    """An ``ofx`` subcommand another package plugs in (``ofx.commands``): ``ofx <name> ...``
    calls ``main(args)`` with the arguments after the name and exits with its return code."""

    name: str
    summary: str
    main: Callable[[list[str]], int]
