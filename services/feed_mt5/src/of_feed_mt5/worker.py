"""One daemon thread for the terminal client's blocking calls, awaited from asyncio.

One call at a time (neither the package nor RPyC is thread-safe); a hung call never blocks exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class Worker:
    def __init__(self, name: str = "mt5") -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, fut, fn))
        return fut

    def close(self) -> None:
        """Stop after the queued calls; a call still running is abandoned, not waited for."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, fut, fn = job
            if fut.cancelled():
                continue
            try:
                result = fn()
            except BaseException as err:  # handed to the awaiting coroutine, never lost here
                self._settle(loop, fut, None, err)
            else:
                self._settle(loop, fut, result, None)

    @staticmethod
    def _settle(
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any],
        result: Any,
        error: BaseException | None,
    ) -> None:
        def settle() -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop closed while the call ran
            loop.call_soon_threadsafe(settle)
