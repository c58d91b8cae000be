"""Invariants of docker-compose.yml, .env.example and the Dockerfile, checked without an engine.

The compose model is resolved by the real Compose v2 binary (scripts/compose_check.py), so
anchors, merge keys, interpolation and profiles are seen exactly as `docker compose` sees them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "compose_check.py"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

if TYPE_CHECKING:
    from scripts import compose_check
else:
    # scripts/ is not an installed package: load it by path, whatever sys.path holds.
    _spec = importlib.util.spec_from_file_location("_of_compose_check", SCRIPT)
    assert _spec is not None
    assert _spec.loader is not None
    compose_check = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = compose_check
    _spec.loader.exec_module(compose_check)

OFX_SERVICES = frozenset(
    {"feed_bybit", "feed_mt5", "analytics", "patterns", "aggregator", "alerts", "api"}
)
STATEFUL_STAGES = ("analytics", "patterns", "aggregator")
INFRA_SERVICES = frozenset({"redis", "postgres", "migrate"})

# Every variable the services or docker-compose.yml read; .env.example documents each one.
DOCUMENTED_VARIABLES = (
    "REDIS_PASSWORD",
    "POSTGRES_PASSWORD",
    "OF_REDIS_URL",
    "OF_DATABASE_URL",
    "OF_INSTRUMENTS",
    "OF_REGISTRY_FILE",
    "OF_LOG_LEVEL",
    "OF_LOG_FORMAT",
    "OF_METRICS_PORT",
    "OF_HEALTH_TTL_S",
    "OF_WORKER_ID",
    "OF_API_HOST",
    "OF_API_PORT",
    "OF_API_TOKEN",
    "OF_TELEGRAM_BOT_TOKEN",
    "OF_TELEGRAM_CHAT_ID",
    "OF_MT5_BRIDGE_HOST",
    "OF_MT5_BRIDGE_PORT",
    "OF_BYBIT_WS_URL",
    "OF_BYBIT_REST_URL",
    "OF_BYBIT_DEPTH",
)


@pytest.fixture(scope="module")
def compose_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a copy of docker-compose.yml in an empty directory.

    Compose reads the services' `env_file: .env` next to the compose file; a developer's real
    .env must not change (or leak into) the results, so the tests resolve a copy.
    """
    copy = tmp_path_factory.mktemp("compose") / "docker-compose.yml"
    copy.write_text(COMPOSE_FILE.read_text())
    return copy


@pytest.fixture(scope="module")
def config(compose_copy: Path) -> dict[str, Any]:
    return compose_check.resolved_config(compose_copy)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = config["services"]
    return result


def _run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ofx_built(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "build" in svc}


# --- the check itself ---------------------------------------------------------------------


def test_compose_file_validates(compose_copy: Path) -> None:
    """Also the control for the negative cases below: the unmodified file passes."""
    result = _run_script("-f", str(compose_copy))
    assert result.returncode == 0, result.stderr


def test_json_mode_prints_the_resolved_config(compose_copy: Path) -> None:
    result = _run_script("-f", str(compose_copy), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["services"]) == OFX_SERVICES | INFRA_SERVICES


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("condition: service_healthy", "condition: service_healty", "condition"),
        # feed_mt5 sits behind a profile: it must be validated too.
        ("    extra_hosts:\n", "    extra_hostz:\n", "extra_hostz"),
        ("  api:\n", '  api:\n    command: ["run", "api"]\n', "command"),
    ],
    ids=["depends-on-condition-typo", "profiled-service-typo", "duplicate-key"],
)
def test_broken_compose_file_fails(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = COMPOSE_FILE.read_text()
    assert old in text, f"the fixture no longer matches docker-compose.yml: {old!r}"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    result = _run_script("-f", str(broken))
    assert result.returncode != 0
    assert expected in result.stderr


@pytest.mark.parametrize("variable", ["REDIS_PASSWORD", "OF_API_TOKEN"])
def test_missing_required_secret_fails(tmp_path: Path, compose_copy: Path, variable: str) -> None:
    env = tmp_path / "env"
    env.write_text(re.sub(rf"(?m)^{variable}=.*$", f"{variable}=", ENV_EXAMPLE.read_text()))
    result = _run_script("-f", str(compose_copy), "--env-file", str(env))
    assert result.returncode != 0
    assert variable in result.stderr


def test_api_gets_the_token(services: dict[str, dict[str, Any]]) -> None:
    assert services["api"]["environment"]["OF_API_TOKEN"] == "change-me-api-token"


# --- services -------------------------------------------------------------------------------


def test_service_set(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == OFX_SERVICES | INFRA_SERVICES
    assert set(_ofx_built(services)) == OFX_SERVICES | {"migrate"}


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        if name == "migrate":  # one-shot, waited for with service_completed_successfully
            continue
        healthcheck = svc.get("healthcheck", {})
        assert healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable", False), f"{name} disables its healthcheck"
        assert svc.get("restart") == "unless-stopped", name


@pytest.mark.parametrize("name", sorted(OFX_SERVICES))
def test_ofx_service_runs_and_checks_itself(services: dict[str, dict[str, Any]], name: str) -> None:
    svc = services[name]
    assert svc["command"] == ["run", name]
    assert svc["healthcheck"]["test"] == ["CMD", "ofx", "check", name]
    assert svc["healthcheck"]["start_period"] == "30s"
    assert svc.get("entrypoint") is None  # the image's ENTRYPOINT ["ofx"]
    depends_on = svc["depends_on"]
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    env = svc["environment"]
    assert env["OF_REDIS_URL"].startswith("redis://:")
    assert env["OF_REDIS_URL"].endswith("@redis:6379/0")
    assert env["OF_DATABASE_URL"].startswith("postgresql+psycopg://orderflow:")
    assert env["OF_METRICS_PORT"] == "9100"


def test_ofx_commands_name_known_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in _ofx_built(services).items():
        if name == "migrate":
            continue
        verb, target = svc["command"]
        assert verb == "run"
        assert target in OFX_SERVICES
        assert svc["healthcheck"]["test"] == ["CMD", "ofx", "check", target]


def test_migrate_is_a_one_shot(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in migrate


def test_all_ofx_services_share_one_build(
    services: dict[str, dict[str, Any]], compose_copy: Path
) -> None:
    built = _ofx_built(services)
    builds = {json.dumps(svc["build"], sort_keys=True) for svc in built.values()}
    images = {svc["image"] for svc in built.values()}
    assert len(builds) == 1, builds
    assert len(images) == 1, images
    (build,) = (json.loads(b) for b in builds)
    assert Path(build["context"]) == compose_copy.parent  # i.e. the repository root
    assert build["dockerfile"] == "Dockerfile"


def _image_tag(image: str) -> str | None:
    """Return the tag of an image reference (None if untagged), ignoring a registry port."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def test_image_tag_parser() -> None:
    assert _image_tag("redis:7.4.6") == "7.4.6"
    assert _image_tag("registry:5000/orderflow") is None
    assert _image_tag("registry:5000/orderflow:1.2@sha256:ab") == "1.2"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name} has no image name"
        tag = _image_tag(image)
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} uses :latest"


def test_redis_has_a_password_and_aof(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+.*", redis["image"])
    command: list[str] = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert password
    assert not password.startswith("-")
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert redis["environment"]["REDISCLI_AUTH"] == password
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in redis["volumes"])
    assert "ports" not in redis  # never exposed to the host
    assert f":{password}@redis:" in services["api"]["environment"]["OF_REDIS_URL"]


def test_postgres_has_a_volume_and_password(services: dict[str, dict[str, Any]]) -> None:
    pg = services["postgres"]
    assert re.fullmatch(r"postgres:16\.\d+.*", pg["image"])
    password = pg["environment"]["POSTGRES_PASSWORD"]
    assert password
    assert any(
        v["target"] == "/var/lib/postgresql/data" and v["type"] == "volume" for v in pg["volumes"]
    )
    assert "pg_isready" in pg["healthcheck"]["test"]
    assert "ports" not in pg
    assert f":{password}@postgres:" in services["api"]["environment"]["OF_DATABASE_URL"]


def test_named_volumes_are_declared(config: dict[str, Any]) -> None:
    assert {"redis-data", "postgres-data"} <= set(config["volumes"])


def test_feed_mt5_is_behind_the_mt5_profile(services: dict[str, dict[str, Any]]) -> None:
    mt5 = services["feed_mt5"]
    assert mt5["profiles"] == ["mt5"]
    assert mt5["environment"]["OF_MT5_BRIDGE_HOST"]
    assert mt5["environment"]["OF_MT5_BRIDGE_PORT"] == "18812"
    others = {name for name, svc in services.items() if svc.get("profiles")}
    assert others == {"feed_mt5"}


def test_api_publishes_8080(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert [(p["target"], p["published"]) for p in api["ports"]] == [(8080, "8080")]
    assert api["environment"]["OF_API_HOST"] == "0.0.0.0"
    assert api["environment"]["OF_API_PORT"] == "8080"


@pytest.mark.parametrize("name", STATEFUL_STAGES)
def test_stateful_stages_can_scale(services: dict[str, dict[str, Any]], name: str) -> None:
    svc = services[name]
    assert "container_name" not in svc
    assert "ports" not in svc
    assert "hostname" not in svc
    assert "OF_WORKER_ID" not in svc["environment"]


def test_no_fixed_container_names(services: dict[str, dict[str, Any]]) -> None:
    assert not [name for name, svc in services.items() if "container_name" in svc]


# --- .env.example and Dockerfile ------------------------------------------------------------


def test_env_example_documents_every_variable() -> None:
    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"(?m)^# ([A-Z][A-Z0-9_]*): \S", text))
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    missing = (set(DOCUMENTED_VARIABLES) | referenced) - documented
    assert not missing, f".env.example lacks a '# VAR: meaning' line for {sorted(missing)}"


def test_dockerfile_installs_every_member_without_dev_groups() -> None:
    text = DOCKERFILE.read_text()
    members = sorted(p.parent.relative_to(ROOT) for p in ROOT.glob("*/*/pyproject.toml"))
    members = [m for m in members if m.parts[0] in {"libs", "services"}]
    assert members
    for member in members:
        manifest = f"{member.as_posix()}/pyproject.toml"
        assert f"COPY {manifest} {manifest}" in text, f"Dockerfile does not copy {manifest}"
    syncs = re.findall(r"uv sync [^\n]*", text)
    assert len(syncs) == 2
    for sync in syncs:
        assert "--locked" in sync
        assert "--no-default-groups" in sync  # excludes both `dev` and `local`
        assert "--all-packages" in sync
    assert 'ENTRYPOINT ["ofx"]' in text
    assert re.search(r"(?m)^USER (?!root|0\b)", text)
