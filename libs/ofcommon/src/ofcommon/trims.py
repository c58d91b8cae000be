"""Entries trimmed before a consumer group read them: noticed, counted, logged and settled.

XREADGROUP ``>`` skips what MAXLEN ~ / MINID trims took from under a lagging group; this sees it.
"""

from __future__ import annotations

import logging
from typing import Final, NamedTuple

import redis.asyncio as aioredis

from ofcommon import entry_ids, keys, metrics

log = logging.getLogger(__name__)

# KEYS: stream   ARGV: group, cap -> {lost, last delivered, entries-read, first entry, first
# entry after the last delivered} or false (no stream or group). lost: entries added after the
# group's last-delivered ID that the stream no longer holds (trimmed unread); -1 when the server
# keeps no counters (Redis < 7, an invalid entries-read) or counting would cost over ``cap``.
_UNREAD_TRIMMED: Final = """
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if not ok then return false end
local s = {}
for i = 1, #info, 2 do s[info[i]] = info[i + 1] end
local g
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local t = {}
  for i = 1, #group, 2 do t[group[i]] = group[i + 1] end
  if t['name'] == ARGV[1] then g = t end
end
if not g then return false end
local p = g['last-delivered-id']
local first = s['first-entry'] and s['first-entry'][1] or ''
local read, added = g['entries-read'], s['entries-added']
local function id(text)
  local ms, seq = string.match(text, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function above(a, b)
  local ams, aseq = id(a)
  local bms, bseq = id(b)
  return ams > bms or (ams == bms and aseq > bseq)
end
local lost = -1
if read and added then
  local expected = added - read
  if first == '' then
    lost = expected
  elseif above(first, p) then
    lost = expected - s['length']
  elseif expected <= tonumber(ARGV[2]) then
    -- trims cut from the head, so nothing after p is gone; XDEL'd entries are not a trim
    lost = expected - #redis.call('XRANGE', KEYS[1], '(' .. p, '+', 'COUNT', expected + 1)
  end
  if lost < 0 then lost = 0 end
end
local nxt = redis.call('XRANGE', KEYS[1], '(' .. p, '+', 'COUNT', 1)[1]
return {lost, p, read or -1, first, nxt and nxt[1] or ''}
"""

# KEYS: stream   ARGV: group, last-delivered ID, entries-read seen, entries-read to set
_SETTLE_TRIMMED: Final = """
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local t = {}
  for i = 1, #group, 2 do t[group[i]] = group[i + 1] end
  if t['name'] == ARGV[1] then
    if t['last-delivered-id'] ~= ARGV[2] or tostring(t['entries-read']) ~= ARGV[3] then
      return 0
    end
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2], 'ENTRIESREAD', ARGV[4])
    return 1
  end
end
return 0
"""


class Trimmed(NamedTuple):
    """Entries of ``stream`` trimmed before the group read them."""

    stream: str
    lost: int | None  # None: some, how many unknown (Redis < 7 keeps no counters)
    after: str  # the group's last-delivered ID: the gap follows it
    before: str  # the first entry the stream still holds ("" when empty)
    entries_read: int  # what the server counted, to settle the report (-1: no counter)


class TrimWatch:
    """Notices a group position that trimming (MAXLEN ~, MINID) has overtaken: entries the
    group never read are gone, and XREADGROUP ``>`` would skip on as if nothing happened.

    Redis >= 7 counts entries added per stream and read per group, so the loss is exact; it is
    settled (the group's entries-read moved past it, ``settle``) once reported, so it is
    reported once. On older servers (the embedded 6.2) a loss is seen when the next unread
    entry of the previous check is gone unread; how many went is unknown (and a consumer that
    was not running while its position was overtaken cannot tell)."""

    def __init__(self, redis: aioredis.Redis, group: str, *, service: str, cap: int) -> None:
        self._redis = redis
        self._group = group
        self._service = service
        self._cap = cap
        self._check = redis.register_script(_UNREAD_TRIMMED)
        self._settle = redis.register_script(_SETTLE_TRIMMED)
        self._known: dict[str, str] = {}  # stream -> next unread entry at the last check (< 7)

    async def check(self, stream: str) -> Trimmed | None:
        reply = await self._check(keys=[stream], args=[self._group, self._cap])
        if not reply:
            return None
        lost, after, read, first, unread = (
            int(reply[0]),
            _s(reply[1]),
            int(reply[2]),
            _s(reply[3]),
            _s(reply[4]),
        )
        known = self._known.pop(stream, None)
        if unread:
            self._known[stream] = unread
        if lost > 0:
            found = Trimmed(stream, lost, after, first, read)
        elif lost < 0 and read < 0 and known is not None and _unread_gone(known, after, first):
            found = Trimmed(stream, None, after, first, read)
        else:
            return None
        metrics.TRIMMED_UNREAD.labels(self._service, _kind(stream)).inc(found.lost or 1)
        log.warning(
            "%s: %s entries trimmed before group %s read them (after %s, before %s)",
            stream,
            found.lost if found.lost is not None else "some",
            self._group,
            after,
            first or "-",
            extra={"stream": stream},
        )
        return found

    async def settle(self, found: Trimmed) -> None:
        """Count a reported loss as read, so the group's lag is true and it is not reported
        again (no-op without server counters, or if the group moved since)."""
        if found.lost is None or found.entries_read < 0:
            return
        await self._settle(
            keys=[found.stream],
            args=[self._group, found.after, found.entries_read, found.entries_read + found.lost],
        )


def _unread_gone(known: str, after: str, first: str) -> bool:
    """The entry ``known`` existed, lies after the group's position and is no longer held."""
    k = entry_ids.parse(known)
    if k <= entry_ids.parse(after):
        return False
    return not first or k < entry_ids.parse(first)


def _kind(stream: str) -> str:
    try:
        return keys.parse_stream(stream)[1]
    except ValueError:
        return "other"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
