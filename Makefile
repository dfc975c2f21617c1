# Tripline: `make run` starts the product with demo data; `make test` runs the tests.
# The virtualenv's interpreter: the system's own Python 3.11 where it has one with venv (Debian's
# is an optimized build, libpython linked into the executable: the same Python ran 1.5 times as
# fast as on pyenv's default build here; README, "Interpreter"), else the first python3.11, else
# python3, on PATH.
PYTHON ?= $(shell for p in /usr/bin/python3.11 "$$(command -v python3.11)" "$$(command -v python3)"; do \
	[ -x "$$p" ] && "$$p" -c 'import ensurepip, sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null && { echo "$$p"; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
DEV_ENV := DEBUG=$${DEBUG:-true}
# Where `make run` serves.
ADDR ?= 0.0.0.0:8000
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

.PHONY: venv system-deps run test test-fast bench bench-services clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

# Headless Chromium and its driver for the page tests (Debian packages).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# Written by the first `make run` and never again: settings read it, so every manage.py command
# works in a fresh shell, and the keys it holds stay (new ones would leave the stored secrets
# unreadable). Only for running on this machine: DEBUG is on.
.env:
	umask 077 && $(PYTHON) -c 'import secrets; print(f"DEBUG=true\nSECRET_KEY={secrets.token_urlsafe(50)}\nSALT_KEY={secrets.token_urlsafe(32)}")' > $@.tmp
	mv $@.tmp $@

run: venv .env
	$(DEV_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEV_ENV) $(BIN)/python manage.py load_demo --site http://$(subst 0.0.0.0,127.0.0.1,$(ADDR))
	@# The demo's webhooks go to Tripline's own demo receiver, on loopback.
	$(DEV_ENV) WEBHOOK_ALLOW_PRIVATE_IPS=$${WEBHOOK_ALLOW_PRIVATE_IPS:-true} exec $(BIN)/python manage.py serve $(ADDR)

test: venv system-deps
	$(BIN)/pytest

# Benchmarks (tests/bench): gunicorn + `manage.py worker` under load; prints the table and writes
# bench/results.json. `make bench` on SQLite with the database broker; `make bench-services` on
# PostgreSQL with Redis (DATABASE_URL / REDIS_URL override the defaults below).
BENCH := $(BIN)/pytest -m bench -s -q -p no:warnings tests/bench
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REDIS_BENCH_URL ?= redis://127.0.0.1:6379/0

bench: venv
	env -u DATABASE_URL -u REDIS_URL $(BENCH)

bench-services: venv
	DATABASE_URL=$${DATABASE_URL:-$(PG_URL)} REDIS_URL=$${REDIS_URL:-$(REDIS_BENCH_URL)} $(BENCH)

clean:
	rm -rf $(VENV) *.egg-info
