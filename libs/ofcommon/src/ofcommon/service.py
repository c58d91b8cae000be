"""What a service is to the runner: a name, its settings type and its async main.

Services register a ``Service`` under the ``ofx.services`` entry-point group; ``ofx run`` finds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ofcommon.bus import Redis
from ofcommon.clock import Clock, LiveClock
from ofcommon.plugins import group_names, load_group, load_one
from ofcommon.settings import PREFIX, BaseSettings, settings_fields

S = TypeVar("S", bound=BaseSettings)

ENTRY_POINT_GROUP = "ofx.services"


@dataclass
class ServiceContext(Generic[S]):
    """What a running service gets from the runner. ``stop`` is set on SIGTERM/SIGINT: main must
    then checkpoint, release what it owns and return."""

    name: str
    settings: S
    redis: Redis
    worker_id: str
    stop: asyncio.Event
    clock: Clock = field(default_factory=LiveClock)
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Service(Generic[S]):
    name: str
    settings_type: type[S]
    main: Callable[[ServiceContext[S]], Awaitable[None]]
    summary: str = ""


def registered() -> dict[str, Service[Any]]:
    """Every installed service, by name."""
    return load_group(ENTRY_POINT_GROUP, Service)


def names() -> tuple[str, ...]:
    """The installed services' names, sorted; imports none of them (a second each, on 2 cores)."""
    return group_names(ENTRY_POINT_GROUP)


def lookup(name: str) -> Service[Any]:
    """The installed service ``name``; only its own package is imported."""
    found = load_one(ENTRY_POINT_GROUP, name, Service)
    if found is not None:
        return found
    if ":" in name:  # module:attribute, for tools and tests that are not installed services
        import importlib

        module, _, attr = name.partition(":")
        svc = getattr(importlib.import_module(module), attr)
        if isinstance(svc, Service):
            return svc
    known = ", ".join(names()) or "none installed"
    raise SystemExit(f"unknown service {name!r} (known: {known})")


async def idle(ctx: ServiceContext[Any]) -> None:
    """The main of a service whose logic is not built yet: stay up, healthy, until stopped."""
    ctx.status["state"] = "idle: not built yet"
    await ctx.stop.wait()


def all_setting_fields() -> set[str]:
    """Field names of every installed service's settings: the set of valid ``OF_*`` names."""
    names: set[str] = set(settings_fields(BaseSettings))
    for svc in registered().values():
        names.update(settings_fields(svc.settings_type))
    return names


def known_setting_fields(settings_type: type[BaseSettings], env: Mapping[str, str]) -> set[str]:
    """What ``load_settings(settings_type, known=...)`` needs to tell a typo from another
    service's variable: every service's fields, but only when ``env`` holds a variable
    ``settings_type`` does not know (importing every service costs seconds at each start)."""
    own = set(settings_fields(settings_type))
    foreign = [n for n in env if n.startswith(PREFIX) and n[len(PREFIX) :].lower() not in own]
    return all_setting_fields() if foreign else own
