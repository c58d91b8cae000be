"""The alerts service SIGKILLed mid-send: real process, real Redis, a real local Bot API server.

Killed while Telegram holds a request (it got the message, the reply never reached the worker),
or just after a reply (sent, perhaps recorded, not acknowledged): the worker that takes over
sends every other alert and none of them twice.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from tests.support import alert_market as m
from tests.support.fake_telegram import FakeTelegram, Received
from tests.support.servers import spawn_service, stop, wait_for

from of_alerts.service import GROUP
from ofcommon import keys

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

TOKEN = "777:kill-test"
CHAT = "1001"
KEYS = {"bias-2024-03-04", "BTCUSDT-7", "BTCUSDT-8", "BTCUSDT-9", "BTCUSDT-10", "BTCUSDT-11"}


def _key(r: Received) -> str:
    return r.text.rsplit(" · ", 1)[-1].strip()


def _settled(client: sync_redis.Redis) -> bool:
    for kind in ("tradeevents", "bias"):
        stream = keys.stream(m.SYMBOL, kind)
        if not client.exists(stream):
            return False
        groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
        top = client.xrevrange(stream, count=1)
        g = groups.get(GROUP)
        if g is None or g["pending"] or (top and g["last-delivered-id"] != top[0][0]):
            return False
    return True


@pytest.mark.parametrize("moment", ["request_held", "just_answered"])
async def test_no_duplicate_after_sigkill_mid_send(
    service_env: dict[str, str], tmp_path: Path, moment: str
) -> None:
    client = sync_redis.Redis.from_url(service_env["OF_REDIS_URL"])
    with FakeTelegram(TOKEN) as tg:
        if moment == "request_held":
            tg.state.hold_at = 3
            reached = tg.state.holding
        else:
            tg.state.mark_at = 3
            reached = tg.state.answered
        env = {
            **service_env,
            "OF_TELEGRAM_BOT_TOKEN": TOKEN,
            "OF_TELEGRAM_CHAT_ID": CHAT,
            "OF_TELEGRAM_API_URL": tg.url,
            "OF_INSTRUMENTS": m.SYMBOL,
            "OF_ALERTS_CHAT_INTERVAL_S": "0.05",
            "OF_ALERTS_CLAIM_IDLE_S": "1",
            "OF_TELEGRAM_TIMEOUT_S": "3",  # the dead victim's chat turn lapses after 2 × 3 + 5 s
        }
        victim = spawn_service("alerts", env, tmp_path, "victim", OF_WORKER_ID="victim")
        rescuer = None
        try:
            wait_for(lambda: tg.calls("getMe"), 60, "the victim's getMe")
            async_client = aioredis.Redis.from_url(service_env["OF_REDIS_URL"])
            try:
                await m.publish(async_client)
            finally:
                await async_client.aclose()
            wait_for(reached.is_set, 60, f"the third send ({moment})")
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
            tg.state.release.set()  # the held reply goes to a dead socket
            before = len(tg.sends())
            assert before == 3
            rescuer = spawn_service("alerts", env, tmp_path, "rescuer", OF_WORKER_ID="rescuer")
            wait_for(lambda: _settled(client) and len(tg.sends()) >= 6, 90, "the rescuer")
            assert stop(rescuer) == 0
        finally:
            for proc in (victim, rescuer):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        sends = tg.sends()
        by_key: dict[str, int] = {}
        for r in sends:
            by_key[_key(r)] = by_key.get(_key(r), 0) + 1
        assert by_key == dict.fromkeys(KEYS, 1), by_key  # every alert, each exactly once
        third = _key(sends[2])
        log = [json.loads(x) for x in (tmp_path / "rescuer.log").read_text().splitlines() if x]
        said = " ".join(str(x.get("msg", "")) for x in log)
        if moment == "request_held":
            # the rescuer found the victim's claim: the message may be in the chat, so not resent
            assert f"{third} to chat {CHAT} (part 0): an earlier send was interrupted" in said
        record = client.hget(keys.alert_record(m.SYMBOL, third), f"{CHAT}:0")
        assert record is not None
    client.close()
