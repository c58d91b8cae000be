"""A deterministic multi-day input for the aggregator: per day the prior session's final profile,
one-minute bars that fall to VAL, an absorption there, then a rally to VAH (break-even and trail
on the way), a fall through the stop, or an exhaustion exit. Prices scale with the instrument's
profile row, so any registry instrument works."""

from __future__ import annotations

from ofcommon.instruments import Instrument
from ofcommon.messages import Bar, Direction, Message, PatternSignal, ProfileUpdate

S = 1_000_000_000
MIN = 60 * S
DAY = 86_400 * S


def _decimals(tick: float) -> int:
    return max(0, len(f"{tick:.10f}".rstrip("0").split(".")[1]))


def market(
    inst: Instrument, base: float, start_ns: int, days: int, seed: int
) -> list[tuple[str, Message]]:
    """(stream kind, message) in event-time order; ``start_ns`` a session (UTC day) start; the
    days cycle through the three endings, starting at ``seed`` mod 3."""
    r, dec = inst.row_size, _decimals(inst.tick_size)

    def px(rows: float) -> float:
        return round(base + rows * r, dec)

    out: list[tuple[str, Message]] = []
    for d in range(days):
        day = start_ns + d * DAY
        prof_rows = [(px(k), float(200 - abs(40 - k) * 2)) for k in range(-60, 56)]
        out.append(
            (
                "profile",
                ProfileUpdate(
                    scope="session",
                    session_id=f"day-{d - 1}",
                    session_start=day - DAY,
                    session_end=day,
                    ts_event=day,
                    poc=px(40),
                    vah=px(50),
                    val=px(-50),
                    volume=sum(v for _, v in prof_rows),
                    rows=prof_rows,
                    shape="p_shape",
                    final=True,
                ),
            )
        )
        variant = ("rally", "stop", "exhaustion")[(d + seed) % 3]
        path = [-5.0 * i for i in range(10)] + [-49.0]
        if variant == "rally":
            path += [-49.0 + 8 * i for i in range(1, 14)]
        elif variant == "stop":
            path += [-49.0 - 3 * i for i in range(1, 6)]
        else:
            path += [-49.0 + 3 * i for i in range(1, 8)]
        for i, rows in enumerate(path):
            t = day + (i + 1) * MIN
            lo, hi = px(rows - (0.5 if i == 10 else 1.0)), px(rows + 1.0)
            close = px(rows)
            out.append(
                (
                    "bars",
                    Bar(
                        "1m",
                        t,
                        t + MIN,
                        close,
                        hi,
                        lo,
                        close,
                        1.0,
                        0.5,
                        0.5,
                        0.0,
                        0.0,
                        0.0,
                        1,
                        close,
                        close,
                        [],
                        True,
                    ),
                )
            )
            sig = None
            if i == 10:
                sig = ("absorption", Direction.LONG, px(-50), 90.0)
            elif variant == "rally" and i in (13, 16):
                sig = ("initiative", Direction.LONG, close, 60.0)
            elif variant == "exhaustion" and i == 15:
                sig = ("exhaustion", Direction.SHORT, hi, 80.0)
            if sig is not None:
                kind, direction, price, strength = sig
                out.append(
                    (
                        "patterns",
                        PatternSignal(
                            f"{kind}-{d}-{i}",
                            t + MIN + 1,
                            kind,
                            direction,
                            price,
                            strength,
                        ),
                    )
                )
    return out
