"""An alert as Telegram messages: one photo with the text as caption, or, when the text is
longer than a caption may be (1,024 characters), the photo with the header and then the text.
"""

from __future__ import annotations

from typing import Final, NamedTuple

CAPTION_MAX: Final = 1024
TEXT_MAX: Final = 4096


class Part(NamedTuple):
    number: int  # 0, then 1 for the text after a photo with only the header
    text: str
    photo: bytes | None = None
    silent: bool = False


def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, limit: int) -> str:
    if tg_len(text) <= limit:
        return text
    out = text
    while tg_len(out) > limit - 1:
        out = out[: -max(1, (tg_len(out) - limit) // 2 + 1)]
    return out + "…"


def split(text: str, photo: bytes | None, *, silent: bool = False) -> list[Part]:
    if photo is None:
        return [Part(0, _cut(text, TEXT_MAX), None, silent)]
    if tg_len(text) <= CAPTION_MAX:
        return [Part(0, text, photo, silent)]
    header = text.split("\n", 1)[0]
    return [
        Part(0, _cut(header, CAPTION_MAX), photo, silent),
        Part(1, _cut(text, TEXT_MAX), None, silent),
    ]
