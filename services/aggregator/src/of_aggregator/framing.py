"""Profile framing: completed session profiles in, the day's bias and qualified levels out.

Pure functions of the last few *final* session profiles (``ProfileUpdate``, scope ``session``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from of_analytics.profile import ProfileConfig, compute_stats
from ofcommon.messages import Direction, ProfileUpdate

# README "Profile Shapes" table: base confidence per shape.
_SHAPE_DIRECTION = {"p_shape": Direction.LONG, "b_shape": Direction.SHORT}
_NEUTRAL_CONFIDENCE = {"double_dist": 30.0}
_BALANCED_CONFIDENCE = 20.0


class FramingParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Framing rules (README "Volume Profile Framing", "Qualified Levels", "Multi-Day Context").

    ``accepted_bonus``: confidence added when value moved in the bias direction;
    ``accepted_flip_bonus``: when it turns a neutral day directional. ``rejection_tol``: a VAH/VAL
    "held" when within this share of the VA range of the prior one. ``hook_penalty``: confidence
    taken from a bias that a failed auction contradicts. ``confluence_tol``: a level matches a
    prior POC/VAH/VAL within this share of the VA range, for ``confluence_bonus`` each.
    ``merge_overlap``: prior sessions whose VA overlaps the latest by more than this share of
    the mean VA range are merged (of ``merge_days`` sessions).
    """

    accepted_bonus: float = 15.0
    accepted_flip_bonus: float = 10.0
    rejection_tol: float = 0.1
    hook_penalty: float = 10.0
    confluence_tol: float = 0.05
    confluence_bonus: float = 20.0
    merge_overlap: float = 0.3
    merge_days: int = 3
    va_strength: float = 50.0
    poc_strength: float = 30.0
    lvn_strength: float = 40.0
    naked_poc_strength: float = 40.0
    merged_strength: float = 70.0


class SessionProfile(msgspec.Struct, frozen=True):
    """One completed session, as framing needs it. ``last`` is the session's last traded price
    (from its bars); 0 when unknown, which disables the checks that need it."""

    session_id: str
    end_ns: int
    poc: float
    vah: float
    val: float
    low: float
    high: float
    shape: str
    rows: tuple[tuple[float, float], ...]
    lvn: tuple[float, ...] = ()
    naked_pocs: tuple[float, ...] = ()
    last: float = 0.0

    @property
    def poc_pct(self) -> float:
        """Where the POC sits in the session's range, 0 (low) to 1 (high)."""
        span = self.high - self.low
        return (self.poc - self.low) / span if span > 0 else 0.5

    @property
    def va_range(self) -> float:
        return self.vah - self.val

    @classmethod
    def from_update(cls, u: ProfileUpdate, last: float = 0.0) -> SessionProfile:
        if not u.final or u.scope != "session":
            raise ValueError(
                f"framing needs a final session profile, got {u.scope} final={u.final}"
            )
        prices = [p for p, _ in u.rows]
        return cls(
            session_id=u.session_id,
            end_ns=u.session_end,
            poc=u.poc,
            vah=u.vah,
            val=u.val,
            low=min(prices, default=u.val),
            high=max(prices, default=u.vah),
            shape=u.shape,
            rows=tuple((p, v) for p, v in u.rows),
            lvn=tuple(u.lvn),
            naked_pocs=tuple(u.naked_pocs),
            last=last,
        )


class QualifiedLevel(msgspec.Struct, frozen=True):
    """A level to trade from: ``direction`` is the side a reaction there is traded."""

    kind: str  # val, vah, poc, lvn, naked_poc, merged_val, merged_vah
    price: float
    direction: Direction
    strength: float
    sources: tuple[str, ...]


class Frame(msgspec.Struct, frozen=True):
    """The framing of the latest completed session."""

    session_id: str
    ts_event: int
    shape: str
    direction: Direction
    confidence: float
    poc: float
    vah: float
    val: float
    warnings: tuple[str, ...] = ()  # vah_rejection, val_rejection, bullish_hook, bearish_hook
    notes: tuple[str, ...] = ()
    levels: tuple[QualifiedLevel, ...] = ()
    merged: tuple[float, float] | None = None  # (merged VAL, merged VAH)


def shape_bias(p: SessionProfile) -> tuple[Direction, float]:
    """Direction and base confidence from the shape (README "Profile Shapes" table)."""
    direction = _SHAPE_DIRECTION.get(p.shape)
    if direction is Direction.LONG:
        return direction, 40.0 + 30.0 * p.poc_pct
    if direction is Direction.SHORT:
        return direction, 40.0 + 30.0 * (1.0 - p.poc_pct)
    return Direction.NEUTRAL, _NEUTRAL_CONFIDENCE.get(p.shape, _BALANCED_CONFIDENCE)


@dataclass(slots=True)
class _Acc:
    direction: Direction
    confidence: float
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _accepted(acc: _Acc, prev: SessionProfile, cur: SessionProfile, cfg: FramingParams) -> None:
    # Value accepted higher: POC and VAH both moved up (mirror for lower with POC and VAL).
    if cur.poc > prev.poc and cur.vah > prev.vah:
        moved = Direction.LONG
    elif cur.poc < prev.poc and cur.val < prev.val:
        moved = Direction.SHORT
    else:
        return
    acc.notes.append("value accepted " + ("higher" if moved is Direction.LONG else "lower"))
    if acc.direction is moved:
        acc.confidence += cfg.accepted_bonus
    elif acc.direction is Direction.NEUTRAL:
        acc.direction = moved
        acc.confidence += cfg.accepted_flip_bonus


def _rejections(acc: _Acc, prev: SessionProfile, cur: SessionProfile, cfg: FramingParams) -> None:
    # A rejection needs the auction to have gone through the held edge and closed back inside:
    # the seed's test (same VAH two days) alone also fires on a quiet, balanced repeat.
    tol = cfg.rejection_tol * cur.va_range
    if cur.last <= 0 or tol <= 0:
        return
    if abs(cur.vah - prev.vah) < tol and cur.high > prev.vah > cur.last:
        acc.warnings.append("vah_rejection")
    if abs(cur.val - prev.val) < tol and cur.low < prev.val < cur.last:
        acc.warnings.append("val_rejection")


def _hooks(acc: _Acc, prev: SessionProfile, cur: SessionProfile, cfg: FramingParams) -> None:
    # A failed auction: price auctioned beyond the prior value and came back (README "hooks").
    if cur.last <= 0:
        return
    if cur.low < prev.val < cur.last:
        acc.warnings.append("bullish_hook")
        if acc.direction is Direction.SHORT:
            acc.confidence -= cfg.hook_penalty
    if cur.high > prev.vah > cur.last:
        acc.warnings.append("bearish_hook")
        if acc.direction is Direction.LONG:
            acc.confidence -= cfg.hook_penalty


def _side_of(price: float, reference: float, fallback: Direction) -> Direction:
    """A level below the reference price is support (LONG), above it resistance (SHORT)."""
    if price < reference:
        return Direction.LONG
    if price > reference:
        return Direction.SHORT
    return fallback


def _base_levels(
    cur: SessionProfile, direction: Direction, cfg: FramingParams
) -> list[QualifiedLevel]:
    ref = cur.last if cur.last > 0 else cur.poc
    fallback = Direction.LONG if direction is Direction.NEUTRAL else direction
    sid = (cur.session_id,)
    levels = [
        QualifiedLevel("val", cur.val, Direction.LONG, cfg.va_strength, sid),
        QualifiedLevel("vah", cur.vah, Direction.SHORT, cfg.va_strength, sid),
        QualifiedLevel("poc", cur.poc, _side_of(cur.poc, ref, fallback), cfg.poc_strength, sid),
    ]
    levels += [
        QualifiedLevel("lvn", p, _side_of(p, ref, fallback), cfg.lvn_strength, sid) for p in cur.lvn
    ]
    levels += [
        QualifiedLevel("naked_poc", p, _side_of(p, ref, fallback), cfg.naked_poc_strength, ())
        for p in cur.naked_pocs
        if p != cur.poc
    ]
    return levels


def _confluence(
    levels: list[QualifiedLevel], prev: SessionProfile, cur: SessionProfile, cfg: FramingParams
) -> list[QualifiedLevel]:
    tol = cfg.confluence_tol * cur.va_range
    out = []
    for lv in levels:
        hits = sum(abs(lv.price - x) < tol for x in (prev.val, prev.vah, prev.poc))
        if hits:
            strength = min(100.0, lv.strength + cfg.confluence_bonus * hits)
            lv = QualifiedLevel(
                lv.kind, lv.price, lv.direction, strength, (*lv.sources, prev.session_id)
            )
        out.append(lv)
    return out


def va_overlap(a: SessionProfile, b: SessionProfile) -> float:
    """Overlap of two value areas as a share of their mean range (0 when either is empty)."""
    mean = (a.va_range + b.va_range) / 2.0
    if mean <= 0:
        return 0.0
    return (min(a.vah, b.vah) - max(a.val, b.val)) / mean


def merged_value_area(
    sessions: Sequence[SessionProfile], row_price: float, profile: ProfileConfig
) -> tuple[float, float]:
    """(VAL, VAH) of the summed histograms, by the analytics profile rules."""
    vap: dict[int, float] = {}
    for s in sessions:
        for price, vol in s.rows:
            r = round(price / row_price)
            vap[r] = vap.get(r, 0.0) + vol
    # Eight decimals cover every registry tick and drop the float noise of row * row_price.
    st = compute_stats(vap, row_price, 8, profile)
    return st.val, st.vah


def frame(
    history: Sequence[SessionProfile],
    cfg: FramingParams,
    row_price: float,
    profile: ProfileConfig,
) -> Frame | None:
    """The framing of ``history[-1]`` in the context of the sessions before it (oldest first)."""
    if not history:
        return None
    cur = history[-1]
    direction, confidence = shape_bias(cur)
    acc = _Acc(direction, confidence)
    acc.notes.append(f"{cur.shape} poc at {cur.poc_pct:.0%} of range")
    prev = history[-2] if len(history) >= 2 else None
    if prev is not None:
        _accepted(acc, prev, cur, cfg)
        _rejections(acc, prev, cur, cfg)
        _hooks(acc, prev, cur, cfg)
    levels = _base_levels(cur, acc.direction, cfg)
    merged = None
    if prev is not None:
        levels = _confluence(levels, prev, cur, cfg)
        recent = history[-cfg.merge_days :]
        group = [p for p in recent[:-1] if va_overlap(p, cur) > cfg.merge_overlap] + [cur]
        if len(group) >= 2:
            merged = merged_value_area(group, row_price, profile)
            sources = tuple(p.session_id for p in group)
            levels.append(
                QualifiedLevel(
                    "merged_val", merged[0], Direction.LONG, cfg.merged_strength, sources
                )
            )
            levels.append(
                QualifiedLevel(
                    "merged_vah", merged[1], Direction.SHORT, cfg.merged_strength, sources
                )
            )
    return Frame(
        session_id=cur.session_id,
        ts_event=cur.end_ns,
        shape=cur.shape,
        direction=acc.direction,
        confidence=max(0.0, min(100.0, acc.confidence)),
        poc=cur.poc,
        vah=cur.vah,
        val=cur.val,
        warnings=tuple(acc.warnings),
        notes=tuple(acc.notes),
        levels=tuple(levels),
        merged=merged,
    )
