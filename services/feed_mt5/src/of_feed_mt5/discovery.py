"""Which broker symbol is an instrument: the registry's MT5 names, then their suffix variants.

Pure: it orders candidates and matches them against the terminal's symbol list.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Final

# Account-type decorations brokers add to the same underlying (Exness "m", ".cash", "+", ...).
DEFAULT_SUFFIXES: Final = (
    "m",
    ".m",
    ".a",
    ".b",
    ".c",
    ".i",
    "_i",
    ".r",
    ".s",
    ".pro",
    ".raw",
    ".ecn",
    "-ECN",
    ".std",
    ".cash",
    "+",
    "!",
)
DEFAULT_PREFIXES: Final = ("#",)


def parse_suffixes(text: str) -> tuple[str, ...]:
    """An ``OF_MT5_SYMBOL_SUFFIXES`` value: comma-separated, blanks ignored."""
    return tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


def candidates(
    names: Sequence[str],
    suffixes: Iterable[str] = DEFAULT_SUFFIXES,
    prefixes: Iterable[str] = DEFAULT_PREFIXES,
) -> list[str]:
    """Names to try, best first: the registry's names in order, each bare form (a known suffix
    or prefix removed), then every bare form with each suffix and prefix."""
    suffixes = tuple(suffixes)
    prefixes = tuple(prefixes)
    out: dict[str, None] = dict.fromkeys(names)
    bare: dict[str, None] = {}
    for name in names:
        core = name
        for p in prefixes:
            if core.startswith(p) and len(core) > len(p):
                core = core[len(p) :]
        for s in sorted(suffixes, key=len, reverse=True):
            if core.endswith(s) and len(core) > len(s) + 2:
                core = core[: -len(s)]
                break
        bare[core] = None
    out.update(bare)
    for core in bare:
        out.update(dict.fromkeys(core + s for s in suffixes))
        out.update(dict.fromkeys(p + core for p in prefixes))
    return list(out)


def match(wanted: Sequence[str], available: Collection[str]) -> str | None:
    """The first of ``wanted`` the terminal has; exact names first, then ignoring case."""
    for name in wanted:
        if name in available:
            return name
    by_lower: dict[str, str] = {}
    for name in sorted(available):
        by_lower.setdefault(name.lower(), name)
    for name in wanted:
        found = by_lower.get(name.lower())
        if found is not None:
            return found
    return None


def probe(wanted: Sequence[str], exists: Callable[[str], bool]) -> str | None:
    """Without a symbol list: the first name ``exists`` (a symbol_info call) confirms."""
    for name in wanted:
        if exists(name):
            return name
    return None
