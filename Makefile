# pcf-exchange: every target installs what it needs from nothing (venv, packages, Kafka jars).
#   make test   lint + the whole suite on a real Kafka broker (started and stopped here)
#   make demo   the whole exchange on a lithium-iron-phosphate battery supply chain
#   make bench  benchmarks; figures to bench/results/*.json and BENCHMARKS.md
#   make test-reliability  the fault tests and a 10-minute nemesis on a private 3-node cluster
#   make soak   the whole exchange under load for SOAK_MINUTES (memory, lag, throughput; a plot)
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PCFX := $(VENV)/bin/pcfx
PYTEST_ARGS ?=

.PHONY: install jars browser lint fmt test test-reliability soak demo bench clean help

help:
	@sed -n '2,7p' Makefile

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 3; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

jars: install
	@$(PY) -c 'from pcf_exchange.infra.kafka.launcher import ensure_jars, check_java; check_java(); print("Kafka jars:", ensure_jars())'

# Headless Chromium (Debian's package, /usr/bin/chromium) for the browser tests of the HTML
# compliance report and the compliance console (Playwright drives the system browser; no
# `playwright install`). Installed with apt-get when missing: as root, else through sudo -n.
browser:
	@[ -x /usr/bin/chromium ] || { \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "/usr/bin/chromium not found and no apt-get: install Chromium for the browser tests"; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo -n apt-get update -qq >/dev/null && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "/usr/bin/chromium not found: run 'sudo apt-get install -y chromium' for the browser tests"; fi; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# A broker is started only when neither KAFKA_BOOTSTRAP_SERVERS nor a running local broker is
# there, and then it is stopped again however the run ends.
define with_broker
	if [ -z "$${KAFKA_BOOTSTRAP_SERVERS:-}" ] && ! $(PCFX) broker status >/dev/null 2>&1; then \
	  $(PCFX) broker start; \
	  trap '$(PCFX) broker stop' EXIT; \
	fi; \
	$(1)
endef

test: jars lint browser
	@$(call with_broker,$(PY) -m pytest $(PYTEST_ARGS))

# Every fault test (tests/reliability: a broker killed under load, the cluster unreachable for
# 30 s, paused processes), then the randomized nemesis for NEMESIS_MINUTES (seeded: it prints
# the seed; NEMESIS_ARGS=--seed N replays a run). Each starts and stops its own 3-node cluster;
# `make test` runs only the short case of tests/reliability.
NEMESIS_MINUTES ?= 10
NEMESIS_ARGS ?=
test-reliability: jars lint
	PCFX_RELIABILITY=full $(PY) -m pytest -m reliability tests/reliability $(PYTEST_ARGS)
	PCFX_FUZZ_EXAMPLES=500 $(PY) -m pytest -m fuzz tests/fuzz $(PYTEST_ARGS)
	$(PY) -m tests.reliability.nemesis --minutes $(NEMESIS_MINUTES) $(NEMESIS_ARGS)

# The soak (tests/reliability/soak.py): a 10k-product graph, two streams workers and the gateway
# to three recipients under supplier updates, BOM changes and factor revisions for SOAK_MINUTES;
# RSS, lag and throughput sampled over time, then the oracle and outbound against audit.
# Figures to bench/results/soak.json, the plot to bench/results/soak.png (SOAK_ARGS: e.g.
# --products 2000, --updates N, --rate R).
SOAK_MINUTES ?= 10
SOAK_ARGS ?=
soak: jars
	@$(call with_broker,$(PY) -m tests.reliability.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS))

# `pcfx demo` starts a local broker when none is configured and stops everything it started;
# make demo DEMO_ARGS=--keep-running leaves the broker, the streams worker and the gateway up
# to explore (`pcfx demo stop` ends them).
demo: jars
	@$(PCFX) demo $(DEMO_ARGS)

bench: jars
	@$(call with_broker,$(PY) -m bench $(BENCH_ARGS))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
