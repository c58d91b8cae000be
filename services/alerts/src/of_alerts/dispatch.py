"""From one stream entry to its alerts: filter, read the context, write the text, render the
chart (in a thread), split into parts and deliver each part to every chat.

``handle`` returns once every chat has a settled outcome for every part (the entry may then be
acknowledged) and raises ``limiter.Stopped`` when the service stops first.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from of_alerts import kinds, lookups, metrics, texts
from of_alerts.alert import Alert
from of_alerts.delivery import Delivery, Outcome
from of_alerts.filters import Filters, skip_reason
from of_alerts.limiter import Stopped
from of_alerts.parts import split
from ofcommon.bus import Entry, Redis, symbol_of
from ofcommon.entry_ids import parse
from ofcommon.instruments import Registry
from ofcommon.messages import Bias, TradeEvent

log = logging.getLogger(__name__)


@dataclass
class Dispatcher:
    redis: Redis
    registry: Registry
    filters: Filters
    delivery: Delivery
    chats: tuple[str, ...]
    chart_bars: int = 60
    quiet_warnings: bool = False

    async def handle(self, entry: Entry, now_ms: int) -> dict[str, Outcome]:
        """Outcomes by ``chat:part``; empty when the entry is not alerted."""
        msg = entry.msg
        symbol = symbol_of(entry.stream)
        alert_type = kinds.alert_type(msg) if msg is not None else None
        age_ms = now_ms - parse(entry.id).ms
        why = skip_reason(alert_type, msg, age_ms, self.filters) if msg is not None else "empty"
        if why is not None or symbol is None or not isinstance(msg, TradeEvent | Bias):
            metrics.SKIPPED.labels(why or "not_an_alert").inc()
            if why == "stale":
                log.info("%s %s: %.0f s old, not alerted", entry.stream, entry.id, age_ms / 1000)
            return {}
        assert alert_type is not None
        alert = await self.alert(symbol, entry.id, alert_type, msg)
        text = texts.text(alert)
        photo = await self._photo(alert) if self.chart_bars else None
        silent = self.quiet_warnings and alert_type == "exit_warning"
        outcomes: dict[str, Outcome] = {}
        for part in split(text, photo, silent=silent):
            results = await asyncio.gather(
                *(
                    self.delivery.deliver(symbol, alert.key, alert_type, chat, part)
                    for chat in self.chats
                ),
                return_exceptions=True,  # wait for every chat's request, even when stopping
            )
            for chat, result in zip(self.chats, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                outcomes[f"{chat}:{part.number}"] = result
        return outcomes

    async def alert(
        self, symbol: str, entry_id: str, alert_type: str, msg: TradeEvent | Bias
    ) -> Alert:
        tick = self.registry.get(symbol).tick_size
        ctx = await lookups.context(
            self.redis, symbol, entry_id, msg, tick=tick, n_bars=max(1, self.chart_bars)
        )
        return Alert(type=alert_type, symbol=symbol, key=kinds.event_key(msg), msg=msg, context=ctx)

    async def _photo(self, alert: Alert) -> bytes | None:
        try:
            png = await asyncio.to_thread(_render, alert)
        except Stopped:
            raise
        except Exception:  # a chart is a nicety: the alert goes out as text
            log.exception("%s: the chart could not be rendered; sending text only", alert.key)
            return None
        if png is None:
            log.info("%s: no closed bars before the event; sending text only", alert.key)
        return png


def _render(alert: Alert) -> bytes | None:
    """The chart, in a worker thread; matplotlib is imported by the first one, not at start."""
    from of_alerts import snapshot

    return snapshot.png(alert)
