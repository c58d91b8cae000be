"""Service configuration: ``OF_*`` environment variables decoded into frozen msgspec Structs.

Errors name the variable and the rule (``OF_METRICS_PORT: expected int <= 65535, got '70000'``);
values typed ``Secret`` are redacted everywhere they could be printed.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec

PREFIX: Final = "OF_"
DEFAULT_BLOCK_MS: Final = 1000  # GroupReader and the stages block this long unless told
SOCKET_TIMEOUT_MARGIN_S: Final = 5.0
REDACTED: Final = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def known_secrets() -> frozenset[str]:
    """Every secret value loaded in this process (for log redaction)."""
    with _secrets_lock:
        return frozenset(_secrets)


class Secret:
    """A string that never shows itself: repr/str redact it; ``.get()`` reveals it.

    URLs keep their shape with only the password masked, so a redacted Redis URL still tells the
    operator which host it points at.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            with _secrets_lock:
                _secrets.add(value)
                password = _url_password(value)
                if password:
                    _secrets.add(password)

    def get(self) -> str:
        return self._value

    def redacted(self) -> str:
        if not self._value:
            return ""
        if "://" in self._value:
            return _mask_url(self._value)
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({self.redacted()!r})"

    __str__ = redacted

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def _mask_url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        return REDACTED
    if parts.password is None:
        return value
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class BaseSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What every service reads. Field ``foo_bar`` is variable ``OF_FOO_BAR``."""

    redis_url: Secret = msgspec.field(default_factory=lambda: Secret("redis://127.0.0.1:6379/0"))
    database_url: Secret = msgspec.field(
        default_factory=lambda: Secret("postgresql+psycopg://postgres@127.0.0.1:5432/orderflow")
    )
    instruments: str = ""
    registry_file: str = ""
    worker_id: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    metrics_port: Port = 0
    health_ttl_s: Annotated[float, msgspec.Meta(ge=1)] = 15.0
    parent_pid: Annotated[int, msgspec.Meta(ge=0)] = 0
    shutdown_timeout_s: PositiveFloat = 20.0
    redis_socket_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0

    docs: ClassVar[Mapping[str, str]] = {
        "redis_url": "Redis URL (streams, leases, checkpoints)",
        "database_url": "PostgreSQL URL (SQLAlchemy form, postgresql+psycopg://)",
        "instruments": "groups and/or symbols this worker may handle, comma-separated; empty = all",
        "registry_file": "TOML file overriding the built-in instrument registry",
        "worker_id": "stable worker name; default <hostname>-<pid>",
        "log_level": "DEBUG, INFO, WARNING or ERROR",
        "log_format": "json (one object per line) or text",
        "metrics_port": "Prometheus /metrics port; 0 = off",
        "health_ttl_s": "seconds a health report stays valid (ofx check)",
        "parent_pid": "exit when this process dies (set by the local stack)",
        "shutdown_timeout_s": "seconds allowed for a clean stop before giving up",
        "redis_socket_timeout_s": (
            "seconds a Redis reply may take; 0 = the longest blocking read + "
            f"{SOCKET_TIMEOUT_MARGIN_S:g} s (an explicit value must exceed that read)"
        ),
    }

    def __post_init__(self) -> None:
        longest = self.longest_block_ms() / 1000
        if self.redis_socket_timeout_s and self.redis_socket_timeout_s <= longest:
            # redis-py would time out every idle blocking read and the service crash-loop.
            raise ValueError(
                f"{env_name('redis_socket_timeout_s')}={self.redis_socket_timeout_s:g} must"
                f" exceed the longest blocking read ({longest:g} s, OF_BLOCK_MS): leave it 0"
                " to derive it"
            )

    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"

    def longest_block_ms(self) -> int:
        """The longest blocking read (XREAD BLOCK) this service makes."""
        return DEFAULT_BLOCK_MS

    def socket_timeout_s(self) -> float:
        """The Redis client's socket timeout: set, or derived from the longest blocking read so
        an idle read returns empty instead of timing out."""
        if self.redis_socket_timeout_s:
            return self.redis_socket_timeout_s
        return self.longest_block_ms() / 1000 + SOCKET_TIMEOUT_MARGIN_S


class OwnedStageSettings(BaseSettings, kw_only=True, frozen=True):
    """Settings of stages whose instruments are owned through leases."""

    lease_ttl_s: Annotated[float, msgspec.Meta(ge=1)] = 4.0
    membership_tick_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    worker_dead_after_s: Annotated[float, msgspec.Meta(ge=1)] = 3.0
    checkpoint_interval_s: PositiveFloat = 1.0
    checkpoint_every: Annotated[int, msgspec.Meta(ge=1)] = 5000
    read_count: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    block_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = DEFAULT_BLOCK_MS

    docs: ClassVar[Mapping[str, str]] = {
        **BaseSettings.docs,
        "lease_ttl_s": "seconds an instrument lease lives without renewal",
        "membership_tick_s": "seconds between heartbeats / lease renewals",
        "worker_dead_after_s": "a worker silent this long is dropped from the stage",
        "checkpoint_interval_s": "seconds between checkpoints of an owned instrument",
        "checkpoint_every": "checkpoint after this many input entries at the latest",
        "read_count": "entries per read",
        "block_ms": "milliseconds a blocking read waits for new entries",
    }

    def longest_block_ms(self) -> int:
        return max(self.block_ms, DEFAULT_BLOCK_MS)


S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """A precise, operator-facing configuration error."""


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def _dec_hook(tp: type, obj: Any) -> Any:
    if tp is Secret:
        if isinstance(obj, Secret):
            return obj
        if isinstance(obj, str):
            return Secret(obj)
        raise TypeError("expected a string")
    raise NotImplementedError(f"unsupported settings type {tp!r}")


_ERR = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?:\.(?P<field>[A-Za-z0-9_]+))?[^`]*`)?$")


def _precise(err: msgspec.ValidationError, cls: type[BaseSettings], raw: Mapping[str, str]) -> str:
    m = _ERR.match(str(err))
    msg = (m["msg"] if m else str(err)).replace("`", "")
    field = m["field"] if m else None
    if not field:
        return msg
    msg = msg[:1].lower() + msg[1:].split(", got ")[0]
    value = raw.get(field)
    shown = "" if value is None else f", got {value!r}"
    if value is not None and _is_secret_field(cls, field):
        shown = ""
    return f"{env_name(field)}: {msg}{shown}"


def _is_secret_field(cls: type[BaseSettings], field: str) -> bool:
    for info in msgspec.structs.fields(cls):
        if info.name == field:
            return info.type is Secret
    return False


def settings_fields(cls: type[BaseSettings]) -> tuple[str, ...]:
    return tuple(f.name for f in msgspec.structs.fields(cls))


def load_settings(
    cls: type[S],
    env: Mapping[str, str] | None = None,
    *,
    known: Iterable[str] = (),
) -> S:
    """Build ``cls`` from ``OF_*`` variables.

    Variables that belong to ``cls`` are decoded and validated. Variables that no settings class
    in ``known`` (field names of other services) knows are reported as errors with a suggestion,
    so a typo never silently falls back to a default.
    """
    environ = os.environ if env is None else env
    own = set(settings_fields(cls))
    everyone = own | set(known)
    raw: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(PREFIX):
            continue
        field = name[len(PREFIX) :].lower()
        if field in own:
            raw[field] = value
        elif known and field not in everyone:
            close = difflib.get_close_matches(field, sorted(everyone), n=1)
            hint = f" (did you mean {env_name(close[0])}?)" if close else ""
            raise SettingsError(f"{name}: unknown variable{hint}")
    try:
        return msgspec.convert(raw, cls, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as err:
        raise SettingsError(_precise(err, cls, raw)) from None


def redacted_view(settings: BaseSettings) -> dict[str, Any]:
    """The resolved settings as plain values with every secret redacted."""
    out: dict[str, Any] = {}
    for name in settings_fields(type(settings)):
        value = getattr(settings, name)
        out[env_name(name)] = value.redacted() if isinstance(value, Secret) else value
    return out
