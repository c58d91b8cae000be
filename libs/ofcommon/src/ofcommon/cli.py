"""``ofx``: the one command line of OrderFlow (run, check, config, schema, tail, streams, ...).

Every subcommand reads its configuration from ``OF_*`` variables like the services do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from ofcommon import codec, health, keys, logs, settings as settings_mod
from ofcommon.bus import decode_fields, group_lag
from ofcommon.messages import WIRE_VERSION
from ofcommon.plugins import COMMANDS_GROUP, Command, group_names, load_one
from ofcommon.service import known_setting_fields, lookup, registered
from ofcommon.settings import BaseSettings, SettingsError, load_settings
from ofcommon.stackfile import adopt_local_stack

if TYPE_CHECKING:
    from ofcommon.replay import ReplayStats


def _base_settings() -> BaseSettings:
    return load_settings(BaseSettings)


def _redis() -> Any:  # redis-py's reply unions are narrowed by the commands used here
    return aioredis.Redis.from_url(_base_settings().redis_url.get(), decode_responses=False)


def cmd_run(args: argparse.Namespace) -> int:
    from ofcommon.runner import run

    return run(lookup(args.service))


def cmd_check(args: argparse.Namespace) -> int:
    async def go() -> int:
        redis = _redis()
        try:
            reports = await health.check(redis, args.service)
        except (OSError, RedisError) as err:
            print(f"{args.service}: Redis unreachable: {err}", file=sys.stderr)
            return 1
        finally:
            await redis.aclose()
        if not reports:
            print(f"{args.service}: no live worker on this host", file=sys.stderr)
            return 1
        for report in reports:
            print(json.dumps(report, sort_keys=True))
        return 0

    lookup(args.service)
    return asyncio.run(go())


def cmd_config(args: argparse.Namespace) -> int:
    svc = lookup(args.service)
    try:
        known = known_setting_fields(svc.settings_type, os.environ)
        resolved = load_settings(svc.settings_type, known=known)
    except SettingsError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    docs = getattr(svc.settings_type, "docs", {})
    view = settings_mod.redacted_view(resolved)
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
        return 0
    for name, value in view.items():
        doc = docs.get(name[len(settings_mod.PREFIX) :].lower(), "")
        print(f"{name}={value}" + (f"    # {doc}" if doc else ""))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schema = codec.json_schema()
    schema["x-wire-version"] = WIRE_VERSION
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0


def _render(stream: str, entry_id: str, fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"stream": stream, "id": entry_id}
    if fields and b"origin_id" in fields:  # a dead letter: show why, and what it was
        out["dead_letter"] = {
            k.decode(): v.decode(errors="replace") for k, v in fields.items() if k != codec.FIELD
        }
    msg, raw, reason = decode_fields(fields)
    if msg is not None:
        out["msg"] = codec.to_plain(msg)
    else:
        out["error"] = reason
        if raw is not None:
            out["raw_hex"] = raw.hex()
    return out


def cmd_tail(args: argparse.Namespace) -> int:
    async def go() -> int:
        redis = _redis()
        try:
            last = args.start
            printed = 0
            if args.start == "$" and not args.follow:
                entries = await redis.xrevrange(args.stream, count=args.count)
                entries.reverse()
                for entry_id, fields in entries:
                    print(json.dumps(_render(args.stream, entry_id.decode(), fields)))
                return 0
            while True:
                reply = await redis.xread(
                    {args.stream: last},
                    count=min(args.count - printed, 1000),
                    block=1000 if args.follow else None,
                )
                if not reply:
                    if args.follow:
                        continue
                    return 0
                for _, entries in reply:
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        print(json.dumps(_render(args.stream, last, fields)), flush=True)
                        printed += 1
                if printed >= args.count:
                    return 0
        finally:
            await redis.aclose()

    return asyncio.run(go())


def cmd_streams(args: argparse.Namespace) -> int:
    async def go() -> int:
        redis = _redis()
        rows: list[dict[str, Any]] = []
        name: str
        try:
            async for key in redis.scan_iter(
                match=keys.stream_pattern(args.kind), count=500, _type="stream"
            ):
                name = key.decode()
                info = await redis.xinfo_stream(name)
                groups = await redis.xinfo_groups(name)
                rows.append(
                    {
                        "stream": name,
                        "length": info["length"],
                        "first": _id(info.get("first-entry")),
                        "last": _id(info.get("last-entry")),
                        "groups": {
                            g["name"].decode(): {
                                "lag": await group_lag(redis, name, g),
                                "pending": g["pending"],
                            }
                            for g in groups
                        },
                    }
                )
        finally:
            await redis.aclose()
        rows.sort(key=lambda r: r["stream"])
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'stream':40} {'length':>9} {'first':>17} {'last':>17}  groups (lag/pending)")
        for r in rows:
            groups = " ".join(f"{g}={v['lag']}/{v['pending']}" for g, v in r["groups"].items())
            print(f"{r['stream']:40} {r['length']:>9} {r['first']:>17} {r['last']:>17}  {groups}")
        return 0

    return asyncio.run(go())


def _id(entry: Any) -> str:
    if not entry:
        return "-"
    return str(entry[0].decode() if isinstance(entry[0], bytes) else entry[0])


def cmd_migrate(args: argparse.Namespace) -> int:
    from ofcommon.db import current_revision, migrate

    url = _base_settings().database_url.get()
    migrate(url)
    print(f"database at revision {current_revision(url)}")
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    for name, svc in sorted(registered().items()):
        print(f"{name:12} {svc.summary}")
    return 0


def _speed(text: str) -> float | None:
    if text.lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a speed: {text!r} (max, 1, 10, 0.5, ...)") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"speed must be a positive number or max, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a duration must be positive, got {text!r}")
    return value


def _configure_logs(command: str, settings: BaseSettings) -> None:
    fmt = settings.log_format
    logs.configure(command, settings.resolved_worker_id(), level=settings.log_level, fmt=fmt)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _print_progress(stats: ReplayStats) -> None:
    kinds = " ".join(f"{k}={n}" for k, n in sorted(stats.messages.items()))
    print(
        f"replay: pass {stats.passes + 1} frames={stats.frames} bad={stats.bad_frames}"
        f" messages: {kinds or '-'} added={stats.added} duplicates={stats.duplicates}",
        file=sys.stderr,
        flush=True,
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from ofcommon import replay as replay_mod
    from ofcommon.bus import WriteRefused
    from ofcommon.instruments import RegistryConfigError, load_registry

    settings = _base_settings()
    _configure_logs("replay", settings)
    try:
        registry = load_registry(settings.registry_file)
    except RegistryConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2

    async def go() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        redis = _redis()
        try:
            stats = await replay_mod.replay(
                redis,
                [Path(f) for f in args.files],
                speed=args.speed,
                loop=args.loop,
                registry=registry,
                stop=stop,
                ids=args.ids,
                progress=_print_progress,
            )
        except replay_mod.ReplayError as err:
            print(f"replay: {err}", file=sys.stderr)
            return 2
        except (OSError, ConnectionError, RedisConnectionError) as err:
            print(f"replay: Redis unreachable: {err}", file=sys.stderr)
            return 1
        except WriteRefused as err:
            print(f"replay: Redis refuses writes: {err}", file=sys.stderr)
            return 1
        finally:
            await redis.aclose()
        print(json.dumps(stats.as_dict(), sort_keys=True), flush=True)
        if stats.holes:
            print(
                f"replay: {stats.holes} entries could not be written: their IDs lie below the"
                " top of a stream that holds other entries there (a Gap on the stream says so)",
                file=sys.stderr,
            )
            return 1
        if stats.duplicates and args.ids == "derived":
            print(
                f"replay: {stats.duplicates} entries were refused as already written"
                " (an earlier replay of the same recording)",
                file=sys.stderr,
            )
        return 0

    return asyncio.run(go())


def cmd_record(args: argparse.Namespace) -> int:
    from ofcommon import replay as replay_mod
    from ofcommon.instruments import RegistryConfigError, load_registry
    from ofcommon.venue import RecordOptions

    try:
        venue = replay_mod.load_venue(args.venue)
    except replay_mod.ReplayError as err:
        print(f"record: {err}", file=sys.stderr)
        return 2
    if args.category not in venue.categories:
        known = ", ".join(venue.categories)
        print(
            f"record: venue {args.venue!r} has no category {args.category!r} ({known})",
            file=sys.stderr,
        )
        return 2
    recorder = venue.record
    if recorder is None:
        print(
            f"record: venue {args.venue!r} cannot record (it has no recorder yet)", file=sys.stderr
        )
        return 2
    settings = _base_settings()
    _configure_logs("record", settings)
    try:
        registry = load_registry(settings.registry_file)
    except RegistryConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    options = RecordOptions(args.category, Path(args.out), args.duration, registry)

    async def go() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        try:
            paths = await recorder(options, stop)
        except ValueError as err:  # the venue's own configuration checks (instruments, depth)
            print(f"record: {err}", file=sys.stderr)
            return 2
        for path in paths:
            print(path, flush=True)
        return 0

    return asyncio.run(go())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ofx", description="OrderFlow command line")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="run a service until SIGTERM/SIGINT")
    s.add_argument("service")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("check", help="exit 0 if a worker of the service on this host is healthy")
    s.add_argument("service")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("config", help="print a service's resolved configuration, secrets redacted")
    s.add_argument("service")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("schema", help="print the JSON Schema of every wire message")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("tail", help="print a stream's messages as JSON lines")
    s.add_argument("stream", help="stream key, e.g. of:{BTCUSDT}:trades")
    s.add_argument(
        "--from",
        dest="start",
        default="$",
        help="entry id to start after (0 = from the start); default: the last --count entries",
    )
    s.add_argument("--count", type=int, default=10)
    s.add_argument("--follow", "-f", action="store_true", help="keep printing new entries")
    s.set_defaults(func=cmd_tail)

    s = sub.add_parser("streams", help="list streams with length, first/last id and group lag")
    s.add_argument("--kind", default="*")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_streams)

    s = sub.add_parser("replay", help="publish recorded venue frames into the instrument streams")
    s.add_argument("files", nargs="+", metavar="FILE", help="recordings (<venue>-<category>-….gz)")
    s.add_argument(
        "--speed",
        type=_speed,
        default=None,
        help="max (default: as fast as possible), 1 = real time, 10 = ten times faster, ...",
    )
    s.add_argument("--loop", action="store_true", help="replay again from the start until stopped")
    s.add_argument(
        "--ids",
        choices=("auto", "derived"),
        default="auto",
        help="entry IDs: auto (*) or derived from the receive time (a repeat is refused)",
    )
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("record", help="record a venue's raw frames to rotated gzip files")
    s.add_argument("--venue", required=True, help="venue name, e.g. bybit")
    s.add_argument("--category", required=True, help="venue category, e.g. linear")
    s.add_argument("--out", required=True, metavar="DIR", help="directory for the recordings")
    s.add_argument("--duration", type=_seconds, default=None, metavar="S", help="stop after S s")
    s.set_defaults(func=cmd_record)

    s = sub.add_parser("migrate", help="apply the database migrations to OF_DATABASE_URL")
    s.set_defaults(func=cmd_migrate)

    sub.add_parser("up", help="the local stack: embedded servers and every service (ofx up --help)")

    s = sub.add_parser("services", help="list the installed services")
    s.set_defaults(func=cmd_services)
    for name in group_names(COMMANDS_GROUP):  # parsed by their own package: listed here only
        sub.add_parser(name, help=f"plugged in (ofx {name} --help)")
    return p


# The commands that reach Redis or PostgreSQL (or show the URLs they would use).
_CONNECTING = frozenset({"run", "check", "config", "tail", "streams", "replay", "migrate"})


def _find_servers() -> None:
    """With no OF_REDIS_URL, use the servers of a local stack running on ./var, and say so."""
    given = bool(os.environ.get("OF_REDIS_URL"))
    stack = adopt_local_stack(os.environ)
    if stack is not None:
        used = [
            f"{what} {settings_mod.Secret(os.environ[name]).redacted()}"
            for what, name, url in (
                ("Redis", "OF_REDIS_URL", stack.redis_url),
                ("PostgreSQL", "OF_DATABASE_URL", stack.database_url),
            )
            if url is not None and os.environ.get(name) == url
        ]
        print(
            f"ofx: using the local stack of {stack.path} (ofx up, pid {stack.pid}):"
            f" {', '.join(used)}",
            file=sys.stderr,
        )
    elif not given:
        default = BaseSettings().redis_url.redacted()
        print(
            f"ofx: OF_REDIS_URL is not set and no local stack runs on ./var: using {default}",
            file=sys.stderr,
        )


def _plugged_command(name: str) -> Command | None:
    """The subcommand ``name`` another package plugs in (``ofx.commands``), or None."""
    if name.startswith("-"):
        return None
    return load_one(COMMANDS_GROUP, name, Command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["up"]:  # the local stack parses its own options
        from ofcommon.localstack import main as localstack_main

        return localstack_main(argv[1:])
    plugged = _plugged_command(argv[0]) if argv else None
    if plugged is not None:  # a subcommand another package plugs in (ofx backtest)
        return plugged.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command in _CONNECTING:
        _find_servers()
    try:
        return int(args.func(args))
    except SettingsError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
