"""``ofx``: the one command line of OrderFlow (run, check, config, schema, tail, streams, ...).

Every subcommand reads its configuration from ``OF_*`` variables like the services do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from ofcommon import codec, health, keys, settings as settings_mod
from ofcommon.bus import decode_fields, group_lag
from ofcommon.messages import WIRE_VERSION
from ofcommon.service import all_setting_fields, lookup, registered
from ofcommon.settings import BaseSettings, SettingsError, load_settings


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
        except (OSError, ConnectionError) as err:
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
        resolved = load_settings(svc.settings_type, known=all_setting_fields())
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

    s = sub.add_parser("migrate", help="apply the database migrations to OF_DATABASE_URL")
    s.set_defaults(func=cmd_migrate)

    sub.add_parser("up", help="the local stack: embedded servers and every service (ofx up --help)")

    s = sub.add_parser("services", help="list the installed services")
    s.set_defaults(func=cmd_services)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["up"]:  # the local stack parses its own options
        from ofcommon.localstack import main as localstack_main

        return localstack_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
