"""Bybit v5 public REST: instruments-info (warm-up, tick checks) and recent-trade (gap backfill).

Timeouts, retries with backoff, and a shared cool-down after a 403 rate limit so no caller hammers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import httpx
from prometheus_client import Counter

from ofcommon.clock import Clock, LiveClock
from ofcommon.instruments import Instrument

log = logging.getLogger(__name__)

REST_REQUESTS: Final = Counter(
    "of_bybit_rest_requests_total",
    "Bybit REST requests by endpoint and outcome (ok, retry, rate_limited, error)",
    ["endpoint", "outcome"],
)

# feeds.md A.7: recent-trade reaches back 60 trades on spot, 1,000 elsewhere
RECENT_TRADE_LIMIT: Final[Mapping[str, int]] = {"spot": 60, "linear": 1000, "inverse": 1000}
_PAGE_LIMIT: Final = 1000  # instruments-info maximum page size
_MAX_PAGES: Final = 50  # > 50,000 instruments means a cursor loop, not a big venue
_RATE_LIMIT_CODES: Final = frozenset({10006, 10018})  # "too many visits", "IP rate limit"


class RestError(RuntimeError):
    """A REST call that failed after its retries, or that Bybit refused."""


class RateLimited(RestError):
    """Bybit said 403 / too many visits: every call fails fast until ``until`` (monotonic)."""

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True)
class InstrumentInfo:
    """What the feed needs from one instruments-info row; decimals kept as exact strings."""

    category: str
    symbol: str
    status: str
    tick_size: Decimal
    qty_step: Decimal
    symbol_type: str = ""


@dataclass(frozen=True)
class Mismatch:
    """A registry instrument whose venue facts disagree with the registry (or are missing)."""

    symbol: str  # registry symbol
    venue_symbol: str
    category: str
    problem: str  # "tick_size", "not_listed", "status"
    registry: str
    venue: str
    # the venue's prices still land on the registry's grid (the venue tick is a multiple of it)
    on_grid: bool

    def describe(self) -> str:
        grid = "prices stay on the registry grid" if self.on_grid else "prices leave the grid"
        return (
            f"{self.symbol} ({self.category} {self.venue_symbol}): {self.problem} registry="
            f"{self.registry} venue={self.venue} ({grid})"
        )


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def parse_instrument(category: str, row: Mapping[str, Any]) -> InstrumentInfo:
    price = row.get("priceFilter") or {}
    lot = row.get("lotSizeFilter") or {}
    # spot has no qtyStep: its base-coin precision is the quantity step
    step = lot.get("qtyStep") or lot.get("basePrecision") or "0"
    return InstrumentInfo(
        category=category,
        symbol=str(row.get("symbol", "")),
        status=str(row.get("status", "")),
        tick_size=_decimal(price.get("tickSize", "0")),
        qty_step=_decimal(step),
        symbol_type=str(row.get("symbolType", "") or ""),
    )


def check_instruments(
    instruments: Iterable[Instrument], infos: Iterable[InstrumentInfo]
) -> list[Mismatch]:
    """Compare the registry's Bybit instruments with instruments-info rows.

    A venue tick that differs from the registry's is reported here (log, health, gauge) and goes
    downstream as the instrument's ``InstrumentSpec``, whose tick analytics uses instead of the
    registry's (docs/analytics.md). Bybit has no qty step in the registry to compare with, so the
    venue step is only reported by ``describe_infos`` and the spec.
    """
    by_key = {(i.category, i.symbol): i for i in infos}
    out: list[Mismatch] = []
    for inst in instruments:
        if inst.bybit is None:
            continue
        cat, vsym = inst.bybit.category, inst.bybit.symbol
        info = by_key.get((cat, vsym))
        registry_tick = _decimal(repr(inst.tick_size))
        if info is None:
            out.append(Mismatch(inst.symbol, vsym, cat, "not_listed", "listed", "absent", False))
            continue
        if info.status != "Trading":
            out.append(
                Mismatch(inst.symbol, vsym, cat, "status", "Trading", info.status or "?", True)
            )
        if info.tick_size != registry_tick:
            on_grid = (
                info.tick_size > 0 and registry_tick > 0 and (info.tick_size % registry_tick) == 0
            )
            out.append(
                Mismatch(
                    inst.symbol,
                    vsym,
                    cat,
                    "tick_size",
                    str(registry_tick),
                    str(info.tick_size),
                    on_grid,
                )
            )
    return out


def recent_trade_limit(category: str) -> int:
    return RECENT_TRADE_LIMIT.get(category, 1000)


class BybitRest:
    """Async client of the public market endpoints; one instance per process.

    Transport errors, timeouts and 5xx are retried ``retries`` times with exponential backoff and
    jitter. A 403 (or retCode 10006) starts a cool-down of ``rate_limit_cooldown_s`` (feeds.md
    A.7: ten minutes) during which every call raises ``RateLimited`` without touching the network.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        rate_limit_cooldown_s: float = 600.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            headers={"User-Agent": "orderflow-feed-bybit"},
            transport=transport,
        )
        self._retries = retries
        self._backoff_s = backoff_s
        self._cooldown_s = rate_limit_cooldown_s
        self._clock = clock or LiveClock()
        self._sleep = sleep
        self._blocked_until = 0.0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> BybitRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def rate_limited_for_s(self) -> float:
        return max(0.0, self._blocked_until - self._clock.monotonic())

    async def instruments(self, category: str, symbol: str | None = None) -> list[InstrumentInfo]:
        """Every instrument of a category (all pages), or just ``symbol``."""
        rows: list[InstrumentInfo] = []
        cursor = ""
        for _ in range(_MAX_PAGES):
            params: dict[str, str | int] = {"category": category, "limit": _PAGE_LIMIT}
            if symbol:
                params["symbol"] = symbol
            if cursor:
                params["cursor"] = cursor
            result = await self._get("/v5/market/instruments-info", params, "instruments-info")
            rows.extend(parse_instrument(category, r) for r in result.get("list") or ())
            # spot has no pagination; an empty or missing cursor ends it everywhere
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor:
                return rows
        raise RestError(f"instruments-info {category}: more than {_MAX_PAGES} pages")

    async def recent_trades(
        self, category: str, symbol: str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The latest trades of ``symbol`` as Bybit's raw rows (newest first, as Bybit sends).

        ``limit`` defaults to the category's maximum; larger values are clamped to it.
        """
        cap = recent_trade_limit(category)
        n = cap if limit is None else max(1, min(limit, cap))
        params: dict[str, str | int] = {"category": category, "symbol": symbol, "limit": n}
        result = await self._get("/v5/market/recent-trade", params, "recent-trade")
        rows = result.get("list") or []
        if not isinstance(rows, list):
            raise RestError(f"recent-trade {symbol}: 'list' is {type(rows).__name__}")
        return [r for r in rows if isinstance(r, dict)]

    async def _get(
        self, path: str, params: Mapping[str, str | int], endpoint: str
    ) -> dict[str, Any]:
        last: BaseException | None = None
        for attempt in range(self._retries + 1):
            self._check_cooldown(endpoint)
            try:
                resp = await self._client.get(path, params=dict(params))
            except httpx.TransportError as err:  # connect/read errors and timeouts
                last = err
            else:
                if resp.status_code == 403:
                    self._rate_limited(endpoint, f"HTTP 403: {resp.text[:200]}")
                if resp.status_code >= 500 or resp.status_code == 429:
                    last = RestError(f"HTTP {resp.status_code}")
                elif resp.status_code != 200:
                    REST_REQUESTS.labels(endpoint, "error").inc()
                    raise RestError(f"{endpoint}: HTTP {resp.status_code}: {resp.text[:200]}")
                else:
                    return self._result(resp, endpoint)
            if attempt < self._retries:
                REST_REQUESTS.labels(endpoint, "retry").inc()
                delay = self._backoff_s * (2**attempt) * random.uniform(0.75, 1.25)
                log.warning(
                    "bybit %s failed (%s); retry %d/%d in %.2f s",
                    endpoint,
                    last,
                    attempt + 1,
                    self._retries,
                    delay,
                )
                await self._sleep(delay)
        REST_REQUESTS.labels(endpoint, "error").inc()
        raise RestError(f"{endpoint}: failed after {self._retries + 1} attempts: {last}")

    def _result(self, resp: httpx.Response, endpoint: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError as err:
            REST_REQUESTS.labels(endpoint, "error").inc()
            raise RestError(f"{endpoint}: body is not JSON: {resp.text[:200]!r}") from err
        if not isinstance(body, dict):
            REST_REQUESTS.labels(endpoint, "error").inc()
            raise RestError(f"{endpoint}: body is not an object")
        code = body.get("retCode")
        if code in _RATE_LIMIT_CODES:
            self._rate_limited(endpoint, f"retCode {code}: {body.get('retMsg')}")
        if code != 0:
            REST_REQUESTS.labels(endpoint, "error").inc()
            raise RestError(f"{endpoint}: retCode {code}: {body.get('retMsg')}")
        result = body.get("result")
        if not isinstance(result, dict):
            REST_REQUESTS.labels(endpoint, "error").inc()
            raise RestError(f"{endpoint}: no 'result' object")
        REST_REQUESTS.labels(endpoint, "ok").inc()
        return result

    def _check_cooldown(self, endpoint: str) -> None:
        if self._clock.monotonic() < self._blocked_until:
            REST_REQUESTS.labels(endpoint, "rate_limited").inc()
            raise RateLimited(
                f"{endpoint}: rate limited for another {self.rate_limited_for_s:.0f} s",
                self._blocked_until,
            )

    def _rate_limited(self, endpoint: str, why: str) -> None:
        self._blocked_until = self._clock.monotonic() + self._cooldown_s
        REST_REQUESTS.labels(endpoint, "rate_limited").inc()
        log.error("bybit REST rate limited (%s); pausing REST for %.0f s", why, self._cooldown_s)
        raise RateLimited(f"{endpoint}: {why}", self._blocked_until)


def describe_infos(infos: Sequence[InstrumentInfo]) -> dict[str, dict[str, str]]:
    """Venue facts per venue symbol for the health report."""
    return {
        i.symbol: {"tick": str(i.tick_size), "qty_step": str(i.qty_step), "status": i.status}
        for i in infos
    }
