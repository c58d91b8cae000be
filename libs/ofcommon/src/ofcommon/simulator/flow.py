"""Background order flow of one instrument: a fair value in trend or range phases, clustered
market orders, resting-size noise and market makers repricing the touch around the fair value.
"""

from __future__ import annotations

import math
from random import Random
from typing import Final

from ofcommon.simulator.arrivals import Hawkes
from ofcommon.simulator.book import BUY
from ofcommon.simulator.exchange import SELL, Exchange
from ofcommon.simulator.labels import Label, ParamValue
from ofcommon.simulator.profiles import SimProfile

__all__ = ["Flow"]

_NEVER: Final = 1 << 62
_NS: Final = 1_000_000_000
_SIZE_SIGMA: Final = 1.0  # lognormal spread of market-order sizes: a few large prints
_REPRICE_BAND: Final = 0.75  # ticks between fair value and mid before makers reprice
_IMPACT: Final = 0.3  # share of a trade-driven touch move that the fair value keeps


class Flow:
    """Runs the background between episodes and under them.

    In *free* mode the fair value diffuses (drift in trend phases, mean reversion in range phases)
    and market orders arrive in Hawkes clusters, their side leaning towards the fair value. In
    *scripted* mode (during an episode) the fair value is frozen and only the book noise goes on:
    the episode prints every trade itself, so its label's claims hold exactly. Levels whose ticks
    are in ``protected`` are left alone by the noise (an absorbing level, a thinned sweep path).
    """

    def __init__(self, x: Exchange, profile: SimProfile, rng: Random, seed: int) -> None:
        self.x = x
        self.rng = rng
        self.seed = seed
        self.profile = profile
        self.book = x.book
        self.hawkes = Hawkes(rng, profile.trade_rate)
        mean_lots = profile.bar_lots / (60.0 * profile.trade_rate)
        self._size_mu = math.log(max(mean_lots, 1.0)) - _SIZE_SIGMA**2 / 2
        self.fair = x.book.bid + 0.5
        self.scripted = False
        self.protected: set[int] = set()
        self._last_ns = x.now
        self._next_trade = x.now + self._trade_gap()
        self._next_book = x.now + self._book_gap()
        self._sigma = profile.sigma_ticks
        self._impulse_drift = 0.0
        self._impulse_bias = 0.0
        self._impulse_until = 0
        self.regime = "range"
        self._drift = 0.0
        self._kappa = 0.0
        self._anchor = self.fair
        self._bias = 0.0
        self._activity = 1.0
        self._regime_start = -1  # no phase running: the first event draws the first one
        self._regime_price = x.book.bid
        self._regime_until = x.now

    # --- arrivals ---------------------------------------------------------------------------

    def _trade_gap(self) -> int:
        return int(self.hawkes.next_gap() * _NS) + 1

    def _book_gap(self) -> int:
        return int(self.rng.expovariate(self.profile.book_rate) * _NS) + 1

    def run_until(self, t_end: int) -> None:
        """Background events in ``[now, t_end)``; event time ends at ``t_end``."""
        x = self.x
        book = self.book
        rng = self.rng
        while True:
            nt = _NEVER if self.scripted else self._next_trade
            nb = self._next_book
            t = nt if nt < nb else nb
            if t >= t_end:
                break
            x.advance(t)
            if not self.scripted:
                self._evolve(t)
            if t == nt:
                self._market_order()
                self._next_trade = t + int(self.hawkes.next_gap(self._activity) * _NS) + 1
            else:
                side = BUY if rng.random() < 0.5 else SELL
                level = int(rng.expovariate(0.35))
                if level < book.depth:
                    tick = book.bid - level if side == BUY else book.ask + level
                    if tick not in self.protected:
                        size = int(book.target(level) * (0.6 + 0.8 * rng.random()))
                        book.set_level(side, level, max(1, size))
                self._next_book = t + self._book_gap()
            if not self.scripted:
                self._reprice()
            x.flush()
        x.advance(t_end)

    def _evolve(self, t: int) -> None:
        if t >= self._regime_until:
            self._next_regime(t)
        dt = (t - self._last_ns) / _NS
        self._last_ns = t
        drift = self._drift
        if t < self._impulse_until:
            drift += self._impulse_drift
        self.fair += (
            drift * dt
            + self._kappa * (self._anchor - self.fair) * dt
            + self._sigma * math.sqrt(dt) * self.rng.gauss(0.0, 1.0)
        )

    def _market_order(self) -> None:
        book = self.book
        rng = self.rng
        lean = self.fair - (book.bid + book.ask) / 2
        bias = self._bias + (self._impulse_bias if self.x.now < self._impulse_until else 0.0)
        p_buy = min(0.95, max(0.05, 0.5 + 0.3 * math.tanh(lean) + bias))
        side = BUY if rng.random() < p_buy else SELL
        lots = max(1, int(rng.lognormvariate(self._size_mu, _SIZE_SIGMA)))
        before = book.touch(side)
        self.x.market(side, lots)
        moved = book.touch(side) - before
        if moved:
            self.fair += _IMPACT * moved

    def _reprice(self) -> None:
        book = self.book
        if book.ask - book.bid > 1:
            # A gap (after a sweep) is closed first: the side farther from the fair value steps
            # into it, one level per event, which is how a swept book refills.
            side = BUY if self.fair - book.bid > book.ask - self.fair else SELL
            book.improve(side, book.far_size(0))
            return
        diff = self.fair - (book.bid + book.ask) / 2
        for _ in range(4):
            if diff > _REPRICE_BAND:
                book.shift(1)
                diff -= 1.0
            elif diff < -_REPRICE_BAND:
                book.shift(-1)
                diff += 1.0
            else:
                break

    # --- phases -----------------------------------------------------------------------------

    def _next_regime(self, t: int) -> None:
        x = self.x
        rng = self.rng
        if self._regime_start >= 0:
            self._label_regime(t)
        minute_sd = self._sigma * math.sqrt(60.0)
        if rng.random() < 0.5:
            self.regime = "trend"
            sign = 1 if rng.random() < 0.5 else -1
            # A quarter to half a standard deviation per minute: over a 20-60 minute phase the
            # drift outruns the noise, yet single bars still look like noise.
            self._drift = sign * rng.uniform(0.25, 0.5) * minute_sd / 60.0
            self._kappa = 0.0
            self._bias = 0.06 * sign
            self._activity = 1.2
        else:
            self.regime = "range"
            self._drift = 0.0
            self._kappa = math.log(2.0) / rng.uniform(120.0, 480.0)
            self._anchor = self.fair
            self._bias = 0.0
            self._activity = 0.9
        self._regime_start = t
        self._regime_price = (x.book.bid + x.book.ask) // 2
        self._regime_until = t + int(rng.uniform(20.0, 60.0) * 60 * _NS)

    def _label_regime(self, t: int) -> None:
        x = self.x
        direction = 0 if self.regime == "range" else (1 if self._drift > 0 else -1)
        params: dict[str, ParamValue] = {
            "regime": self.regime,
            "drift_ticks_per_min": round(self._drift * 60.0, 4),
        }
        if self.regime == "range":
            params["half_life_s"] = round(math.log(2.0) / self._kappa, 1)
        end_price = (x.book.bid + x.book.ask) // 2
        x.label(
            Label(
                label_id=x.next_label_id("regime"),
                instrument=x.symbol,
                pattern="regime",
                direction=direction,
                start_ns=self._regime_start,
                end_ns=t,
                price_levels=[x.price(self._regime_price), x.price(end_price)],
                params=params,
                seed=self.seed,
            )
        )

    def close_phase(self, t: int) -> None:
        """Label the running phase as ended at ``t`` (a session close); the next event starts a new
        one."""
        if self._regime_start >= 0:
            self._label_regime(t)
        self._regime_start = -1
        self._regime_until = t

    # --- what episodes use ------------------------------------------------------------------

    def script(self) -> None:
        """Freeze the fair value and stop background market orders until ``release``."""
        self.scripted = True

    def release(self) -> None:
        book = self.book
        self.scripted = False
        self.protected.clear()
        self.fair = (book.bid + book.ask) / 2
        self._last_ns = self.x.now
        self._next_trade = self.x.now + self._trade_gap()

    def impulse(self, ticks: float, seconds: float, bias: float) -> None:
        """An extra drift of ``ticks`` over ``seconds`` with flow leaning ``bias`` (a reversal)."""
        self._impulse_drift = ticks / seconds
        self._impulse_bias = bias
        self._impulse_until = self.x.now + int(seconds * _NS)

    def reopen(self, gap_ticks: int) -> None:
        """A session opens: the book is rebuilt ``gap_ticks`` away and sent as a snapshot."""
        book = self.book
        book.recenter(book.bid + gap_ticks)
        self.fair = book.bid + 0.5
        if self.regime == "range":
            self._anchor = self.fair
        self._last_ns = self.x.now
        self._next_trade = self.x.now + self._trade_gap()
        self._next_book = self.x.now + self._book_gap()
        self.x.snapshot()
