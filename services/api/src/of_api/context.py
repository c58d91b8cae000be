"""What every route and the WebSocket share: registry, served instruments, Redis, PostgreSQL.

Built once by the service (or a test) and stored on ``app.state.ctx``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import HTTPException

from of_api.history import History
from of_api.hub import Hub
from of_api.live import Live
from of_api.settings import ApiSettings
from ofcommon.instruments import Instrument, Registry, UnknownInstrumentError

T = TypeVar("T")


@dataclass
class ApiContext:
    settings: ApiSettings
    registry: Registry
    served: tuple[Instrument, ...]
    live: Live
    history: History
    hub: Hub

    def instrument(self, symbol: str) -> Instrument:
        """The served instrument ``symbol``, else a 404 with the reason."""
        try:
            inst = self.registry.get(symbol)
        except UnknownInstrumentError as err:
            raise HTTPException(404, str(err)) from None
        if inst not in self.served:
            raise HTTPException(
                404, f"instrument {symbol!r} is not served by this API (OF_INSTRUMENTS)"
            )
        return inst

    async def db(self, fn: Callable[..., T], *args: object) -> T:
        """Run a History query off the event loop."""
        return await asyncio.to_thread(fn, *args)
