"""A real local HTTP server speaking the Bot API methods the alerts service uses: ``getMe``,
``sendMessage`` and ``sendPhoto`` (form-encoded or multipart, as python-telegram-bot sends them).

Modes: answer the next N requests with 429 and ``retry_after``; answer a chat with a permanent
error (400 chat not found, 403 bot blocked); hold a request's reply until released (to kill the
client mid-send); drop the connection after reading a request. Every request is recorded with its
receive time (``time.monotonic()`` of this process: the edge, where the wall clock is fine).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_ID = 424242
USERNAME = "orderflow_test_bot"


@dataclass
class Received:
    at: float  # time.monotonic() when the request was read
    method: str
    params: dict[str, Any]
    photo: bytes | None
    status: int = 0  # the HTTP status answered (0: none, the connection was dropped)

    @property
    def chat(self) -> str:
        return str(self.params.get("chat_id", ""))

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")


@dataclass
class _State:
    token: str
    received: list[Received] = field(default_factory=list)
    retry_after: list[int] = field(default_factory=list)  # one 429 per item, its retry_after
    failing: dict[str, tuple[int, str]] = field(default_factory=dict)  # chat -> (code, text)
    hold_next: int = 0  # hold the replies of this many sends
    holding: threading.Event = field(default_factory=threading.Event)  # a reply is held
    release: threading.Event = field(default_factory=threading.Event)
    drop_next: int = 0  # close the connection instead of answering this many sends
    hold_at: int = 0  # hold the reply of the n-th send (1-based) until ``release``
    mark_at: int = 0  # set ``answered`` once the n-th send's reply is written
    answered: threading.Event = field(default_factory=threading.Event)
    n_sends: int = 0
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)


def _parse(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes | None]:
    """(parameters, uploaded photo) of a form-encoded or multipart request."""
    params: dict[str, Any] = {}
    photo = None
    if content_type.startswith("multipart/form-data"):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if part.get_filename():
                photo = data
            elif name:
                params[str(name)] = data.decode()
    elif body:
        params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    for key, value in list(params.items()):
        with contextlib.suppress(TypeError, ValueError):  # PTB JSON-encodes every value
            params[key] = json.loads(value)
    if isinstance(params.get("photo"), str) and params["photo"].startswith("attach://"):
        params.pop("photo")
    return params, photo


class FakeTelegram:
    """``with FakeTelegram(token) as tg:`` serves on ``tg.url`` (``OF_TELEGRAM_API_URL``)."""

    def __init__(self, token: str, port: int = 0) -> None:
        self.state = _State(token)
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> FakeTelegram:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self.state))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests look at ----------------------------------------------------------------

    def sends(self, chat: str | None = None) -> list[Received]:
        with self.state.lock:
            out = [r for r in self.state.received if r.method in ("sendMessage", "sendPhoto")]
        return [r for r in out if chat is None or r.chat == chat]

    def delivered(self, chat: str | None = None) -> list[Received]:
        return [r for r in self.sends(chat) if r.status == 200]

    def calls(self, method: str) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if r.method == method]

    @contextmanager
    def holding(self) -> Iterator[threading.Event]:
        """Hold the next send's reply; yields the event set once it is held."""
        self.state.release.clear()
        self.state.holding.clear()
        self.state.hold_next = 1
        try:
            yield self.state.holding
        finally:
            self.state.release.set()


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            at = time.monotonic()
            prefix, _, method = self.path.lstrip("/").partition("/")
            params, photo = _parse(self.headers.get("Content-Type", ""), body)
            record = Received(at, method, params, photo)
            with state.lock:
                state.received.append(record)
            if prefix != f"bot{state.token}":
                self._answer(
                    record, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                )
                return
            if method == "getMe":
                self._answer(record, 200, {"ok": True, "result": _me()})
                return
            if method not in ("sendMessage", "sendPhoto"):
                self._answer(
                    record, 404, {"ok": False, "error_code": 404, "description": "Not Found"}
                )
                return
            self._send(record)

        def _send(self, record: Received) -> None:
            with state.lock:
                retry = state.retry_after.pop(0) if state.retry_after else None
                failing = state.failing.get(record.chat)
                state.n_sends += 1
                hold = state.hold_next > 0 or state.n_sends == state.hold_at
                state.hold_next -= 1 if state.hold_next > 0 else 0
                mark = state.n_sends == state.mark_at
                drop = state.drop_next > 0
                state.drop_next -= 1 if drop else 0
            if retry is not None:
                self._answer(
                    record,
                    429,
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {retry}",
                        "parameters": {"retry_after": retry},
                    },
                )
                return
            if failing is not None:
                code, text = failing
                self._answer(record, code, {"ok": False, "error_code": code, "description": text})
                return
            if drop:
                self.close_connection = True
                self.connection.close()
                return
            if hold:
                state.holding.set()
                state.release.wait(60)
            self._answer(record, 200, {"ok": True, "result": _message(state, record)})
            if mark:
                state.answered.set()

        def _answer(self, record: Received, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client is gone (killed mid-request)
                return
            record.status = status

    return Handler


def _me() -> dict[str, Any]:
    return {
        "id": BOT_ID,
        "is_bot": True,
        "first_name": "OrderFlow test",
        "username": USERNAME,
        "can_join_groups": False,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def _message(state: _State, record: Received) -> dict[str, Any]:
    chat = record.chat
    chat_obj: dict[str, Any] = (
        {"id": int(chat), "type": "private" if int(chat) > 0 else "group", "title": "t"}
        if chat.lstrip("-").isdigit()
        else {"id": -1001234567890, "type": "channel", "title": chat}
    )
    with state.lock:
        message_id = next(state.ids)
    out: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": chat_obj,
        "from": _me(),
    }
    if record.method == "sendPhoto":
        out["photo"] = [
            {
                "file_id": f"photo-{message_id}",
                "file_unique_id": f"u{message_id}",
                "width": 800,
                "height": 480,
                "file_size": len(record.photo or b""),
            }
        ]
        if "caption" in record.params:
            out["caption"] = record.params["caption"]
    else:
        out["text"] = record.params.get("text", "")
    return out
