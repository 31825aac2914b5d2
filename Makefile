# One task runner with the verbs a newcomer needs.
#   make run    serve sample data on http://127.0.0.1:8000/ (no Redis, no Nginx;
#               installs only the runtime dependencies)
#   make test   create the venv, install every extra and the test and lint tools,
#               run lint and every test
#   make lint   ruff + mypy
#   make bench  the load-test lab: the study's scenarios on every target, report
#               in var/bench (geojson-api bench; BENCH_ARGS=--quick for a smoke run)
#   make bench-soak  the soak run: the mixed profile against the stack for 60 minutes,
#               RSS and open files per worker, request counts (var/bench/soak)
#   make bench-wholefile  whole-file delivery against nginx, wrk (loadtest/wholefile.py)
#   make bench-servers  WSGI servers on the same app (Gunicorn gthread/sync/gevent,
#               Granian, uWSGI; and a do-nothing app under each) beside nginx static,
#               small and big files, CPU per request (loadtest/servers.py; installs
#               Granian and uWSGI into the venv first; BENCH_ARGS=--rounds 5)
#   make bench-slowheads  the same servers against 50 clients sending their request head a
#               byte a second: do normal requests still get through? (loadtest/slowheads.py)
#   make bench-metrics  what Prometheus metrics cost: the app with and without them, wrk
#               (loadtest/metrics_cost.py; BENCH_ARGS=--pairs 5 --duration 10)
#   make bench-features  OGC API - Features vs pygeoapi and tipg (loadtest/features.py;
#               installs the peers first with loadtest/peers/setup, as root)
#   make bench-tiles  vector tiles (app alone, stack with offload) vs tipg's MVT endpoint
#               (loadtest/tiles.py; installs the peers like bench-features)
#   make docs   refresh the README configuration table from the settings table
#   make assets fetch the pinned browser libraries (web/package-lock.json, npm ci) and
#               copy what the pages serve into src/geojson_api/web/static/vendor

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DATA   ?= var/data
BIND   ?= 127.0.0.1:8000
BENCH_ARGS ?=

.PHONY: run test lint bench bench-soak bench-wholefile bench-servers bench-slowheads bench-metrics bench-features bench-tiles docs assets system-deps clean

# The venv sees the system's site-packages: what the machine already has is
# reused and only what is missing is downloaded (a machine whose Python already
# carries the dependencies runs the tests without reaching PyPI).
$(BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(VENV)

# The pages' MapLibre files, from the lockfile (npm ci), before any pip install:
# the package ships them. Node's npm comes from Debian when missing (as root).
VENDOR = src/geojson_api/web/static/vendor
$(VENDOR)/.built: web/package.json web/package-lock.json scripts/build-assets
	./scripts/system-deps node
	$(PYTHON) scripts/build-assets
	touch $@

assets: $(VENDOR)/.built

# Two stamps: `make run` installs what serving needs (the runtime dependencies
# only); `make test` and the other tool targets install every extra, the test
# tools and the linters (pyproject.toml: test and dev).
$(BIN)/.installed-run: pyproject.toml $(VENDOR)/.built | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed: pyproject.toml $(VENDOR)/.built | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@ $(BIN)/.installed-run

run: $(BIN)/.installed-run
	$(BIN)/geojson-api serve --data $(DATA) --bind $(BIND) --sample

system-deps:
	./scripts/system-deps

lint: $(BIN)/.installed
	$(BIN)/python -m ruff check src tests loadtest deploy
	$(BIN)/python -m mypy

test: $(BIN)/.installed system-deps lint
	$(BIN)/python -m pytest

bench: $(BIN)/.installed system-deps
	$(BIN)/geojson-api bench --out var/bench $(BENCH_ARGS)

bench-soak: $(BIN)/.installed system-deps
	$(BIN)/geojson-api bench --soak 60 --out var/bench/soak $(BENCH_ARGS)

bench-wholefile: $(BIN)/.installed system-deps
	$(BIN)/python loadtest/wholefile.py

# The servers it compares besides Gunicorn are not dependencies of the service.
bench-servers: $(BIN)/.installed system-deps
	$(BIN)/pip install --quiet 'granian==2.8.7' 'uwsgi==2.0.31'
	$(BIN)/python loadtest/servers.py $(BENCH_ARGS)

bench-slowheads: $(BIN)/.installed system-deps
	$(BIN)/pip install --quiet 'granian==2.8.7' 'uwsgi==2.0.31'
	$(BIN)/python loadtest/slowheads.py $(BENCH_ARGS)

bench-metrics: $(BIN)/.installed system-deps
	$(BIN)/python loadtest/metrics_cost.py $(BENCH_ARGS)

bench-features: $(BIN)/.installed system-deps
	./loadtest/peers/setup
	$(BIN)/python loadtest/features.py

bench-tiles: $(BIN)/.installed system-deps
	./loadtest/peers/setup
	$(BIN)/python loadtest/tiles.py

docs: $(BIN)/.installed
	$(BIN)/python scripts/update-readme

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache web/node_modules $(VENDOR)
