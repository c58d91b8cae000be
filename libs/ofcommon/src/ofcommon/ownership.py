"""Who owns which instrument: worker heartbeats, leases with generations, fair share, rebalance.

Every worker of a stage computes the same assignment from the same membership view; leases (set
NX with a TTL, renewed by compare-and-set) make ownership exclusive while views converge.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Final

from ofcommon import keys, metrics
from ofcommon.bus import Redis

log = logging.getLogger(__name__)

# KEYS: workers zset, eligibility hash   ARGV: worker id, eligible csv, dead-after ms, leaving flag
_HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
for i = 1, #dead do
  redis.call('ZREM', KEYS[1], dead[i])
  redis.call('HDEL', KEYS[2], dead[i])
end
return redis.call('HGETALL', KEYS[2])
"""

# KEYS: lease, generation counter   ARGV: worker id, ttl ms  -> generation or nil
_ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local gen = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. gen, 'PX', ARGV[2])
return gen
"""

# KEYS: lease   ARGV: lease value, ttl ms
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease   ARGV: lease value
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _score(worker: str, symbol: str) -> bytes:
    return hashlib.blake2b(f"{worker}\x00{symbol}".encode(), digest_size=8).digest()


def assign(workers: Mapping[str, frozenset[str]]) -> dict[str, str]:
    """Deterministic fair assignment of instruments to workers.

    ``workers`` maps each live worker to the instruments it may own. Each instrument goes to its
    highest-ranked eligible worker (rendezvous hashing, so a change of membership moves few
    instruments) that still has room under ``ceil(instruments / workers)``; when every eligible
    worker is full (narrow ``OF_INSTRUMENTS`` filters), to the least loaded eligible one.
    """
    universe = sorted(set().union(*workers.values())) if workers else []
    if not universe:
        return {}
    cap = math.ceil(len(universe) / len(workers))
    load = dict.fromkeys(workers, 0)
    out: dict[str, str] = {}
    # Instruments with the fewest candidates go first so narrow filters are served before wide ones
    order = sorted(universe, key=lambda s: (sum(s in e for e in workers.values()), s))
    for symbol in order:
        candidates = sorted(
            (w for w, eligible in workers.items() if symbol in eligible),
            key=lambda w: _score(w, symbol),
            reverse=True,
        )
        chosen = next((w for w in candidates if load[w] < cap), None)
        if chosen is None:
            chosen = min(candidates, key=lambda w: (load[w], w))
        out[symbol] = chosen
        load[chosen] += 1
    return out


class Lease:
    """An instrument lease at one generation; its value fences reads and checkpoints."""

    __slots__ = ("generation", "symbol", "value")

    def __init__(self, symbol: str, worker_id: str, generation: int) -> None:
        self.symbol = symbol
        self.generation = generation
        self.value = f"{worker_id}:{generation}"


OnAcquire = Callable[[Lease], Awaitable[None]]
OnRelease = Callable[[Lease], Awaitable[None]]


class Coordinator:
    """Keeps this worker's membership alive and its leases matching the shared assignment.

    ``on_acquire`` starts work on an instrument; ``on_release`` must stop it and checkpoint before
    the lease is released (graceful handover); ``on_lost`` stops it at once without checkpoint
    (the lease expired or was taken: another worker may already own it).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        stage: str,
        worker_id: str,
        eligible: Sequence[str],
        on_acquire: OnAcquire,
        on_release: OnRelease,
        on_lost: OnRelease,
        tick_s: float = 0.5,
        lease_ttl_s: float = 4.0,
        dead_after_s: float = 3.0,
    ) -> None:
        if lease_ttl_s <= tick_s * 2:
            raise ValueError("lease TTL must exceed two membership ticks")
        self._redis = redis
        self.stage = stage
        self.worker_id = worker_id
        self.eligible = frozenset(eligible)
        self._on_acquire = on_acquire
        self._on_release = on_release
        self._on_lost = on_lost
        self._tick_s = tick_s
        self._ttl_ms = int(lease_ttl_s * 1000)
        self._dead_ms = int(dead_after_s * 1000)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self.owned: dict[str, Lease] = {}
        # Leases being handed back: still ours (renewed) until ``on_release`` has checkpointed.
        self.releasing: dict[str, tuple[Lease, asyncio.Task[None]]] = {}
        self.members: dict[str, frozenset[str]] = {}
        self.ticks = 0

    async def tick(self) -> None:
        """One round: heartbeat, renew, hand back surplus, take what the assignment gives us."""
        self.members = await self._beat(leaving=False)
        await self._renew_all()
        desired = {s for s, w in assign(self.members).items() if w == self.worker_id}
        surplus = sorted(set(self.owned) - desired)
        for symbol in surplus:
            # In the background: a final checkpoint may take long, and this tick must go on
            # beating and renewing the other leases meanwhile.
            lease = self.owned.pop(symbol)
            task = asyncio.create_task(self._hand_over(lease), name=f"release:{symbol}")
            self.releasing[symbol] = (lease, task)
        acquired: list[str] = []
        for symbol in sorted(desired - set(self.owned) - set(self.releasing)):
            gen = await self._acquire(
                keys=[keys.lease(symbol, self.stage), keys.lease_generation(symbol, self.stage)],
                args=[self.worker_id, self._ttl_ms],
            )
            if gen is None:
                continue  # the previous owner has not let go yet; retry next tick
            lease = Lease(symbol, self.worker_id, int(gen))
            self.owned[symbol] = lease
            acquired.append(f"{symbol}#{lease.generation}")
            await self._on_acquire(lease)
        if surplus or acquired:
            log.info(
                "rebalanced: released %s, acquired %s; owning %d of %d with %d workers",
                ",".join(surplus) or "-",
                ",".join(acquired) or "-",
                len(self.owned),
                len(set().union(*self.members.values())) if self.members else 0,
                len(self.members),
            )
        metrics.OWNED.labels(self.stage).set(len(self.owned))
        self.ticks += 1

    async def leave(self) -> None:
        """Hand back every instrument (checkpointed by ``on_release``) and leave the stage."""
        released = sorted({*self.owned, *self.releasing})
        # All at once: each instrument's final checkpoint waits on its own worker, not on others.
        await asyncio.gather(
            *(self._hand_over(self.owned.pop(symbol)) for symbol in sorted(self.owned)),
            *(task for _, task in list(self.releasing.values())),
            return_exceptions=True,
        )
        if released:
            log.info("left the stage, released %s", ",".join(released))
        await self._beat(leaving=True)
        metrics.OWNED.labels(self.stage).set(0)

    async def _beat(self, *, leaving: bool) -> dict[str, frozenset[str]]:
        reply = await self._heartbeat(
            keys=[keys.workers(self.stage), keys.worker_eligibility(self.stage)],
            args=[self.worker_id, ",".join(sorted(self.eligible)), self._dead_ms, int(leaving)],
        )
        members: dict[str, frozenset[str]] = {}
        for worker, eligible in zip(reply[::2], reply[1::2], strict=True):
            text = eligible.decode()
            members[worker.decode()] = frozenset(text.split(",")) if text else frozenset()
        return members

    async def _renew_all(self) -> None:
        leases = [*self.owned.values(), *(lease for lease, _ in self.releasing.values())]
        if not leases:
            return
        pipe = self._redis.pipeline(transaction=False)
        for lease in leases:
            await self._renew(
                keys=[keys.lease(lease.symbol, self.stage)],
                args=[lease.value, self._ttl_ms],
                client=pipe,
            )
        results = await pipe.execute()
        for lease, ok in zip(leases, results, strict=True):
            if not int(ok):
                log.warning("lost lease %s (generation %d)", lease.symbol, lease.generation)
                if self.owned.get(lease.symbol) is lease:
                    del self.owned[lease.symbol]
                    await self._on_lost(lease)
                # A lease lost while being handed back: its final checkpoint is refused by the
                # fence; the release finishes on its own.

    async def _hand_over(self, lease: Lease) -> None:
        """``on_release`` (stop and checkpoint), then free the lease for the next owner."""
        try:
            await self._on_release(lease)
            await self._release(keys=[keys.lease(lease.symbol, self.stage)], args=[lease.value])
        except Exception:
            # Redis away: the lease lapses on its own and the next owner takes over from the
            # last checkpoint.
            log.exception("handing back %s failed", lease.symbol)
        finally:
            current = self.releasing.get(lease.symbol)
            if current is not None and current[0] is lease:
                del self.releasing[lease.symbol]


def owners(leases: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """Map symbol -> worker id from (symbol, lease value) pairs, skipping free instruments."""
    out: dict[str, str] = {}
    for symbol, value in leases:
        if value:
            out[symbol] = value.decode().rsplit(":", 1)[0]
    return out
