# dataset-ops: `make demo` runs the IMDb pipeline locally, `make test` runs the whole test suite.
# Both install what is missing first (system packages, uv, the pinned virtualenv).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := pkg-config libmariadb-dev chromium chromium-driver
BENCH_APT_PACKAGES := pgloader postgresql-client wrk

.PHONY: help install services lint test demo airflow distributed screenshots bench bench-validation bench-upload bench-ingest bench-imdb-api bench-media bench-inference bench-distributed lock clean

help:
	@echo "make demo    run the IMDb download + COPY load on the bundled sample (embedded services)"
	@echo "make test    install what is missing, start services, lint, run all tests"
	@echo "make airflow open the Airflow UI on the demo's home (http://localhost:8080)"
	@echo "make distributed  IMDb, staged-upload and ingest DAGs on CeleryExecutor with two workers"
	@echo "make screenshots  the browser test, saving the trigger-form pictures in docs/"
	@echo "make bench   COPY load benchmark (needs pgloader; installed from Debian packages)"
	@echo "make bench-validation / bench-upload   staged-upload benchmarks"
	@echo "make bench-imdb-api   the IMDb read API vs a seed-style one (wrk)"
	@echo "make bench-ingest   microservice ingest vs dlt (dlt in its own venv)"
	@echo "make bench-media / bench-inference   Apify media downloads / inference report workbook"
	@echo "make bench-distributed   one Celery worker against two (IMDb load, 20-file staged batch)"

# --- installation ---------------------------------------------------------------------------
define apt_ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "install: apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "install: please install these Debian packages as root:$$missing" >&2; exit 1; fi; \
	fi
endef

$(STAMP): requirements.txt requirements-dev.txt
	$(call apt_ensure,$(APT_PACKAGES))
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"
	@[ -x $(PY) ] || uv venv -q -p $(PYTHON) $(VENV)
	uv pip install -q --compile-bytecode -p $(VENV) -r requirements.txt -r requirements-dev.txt
	@# plugins/ on the venv's path, so `.venv/bin/python -m dataset_ops.upload` works anywhere
	@echo "$(CURDIR)/plugins" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/dataset_ops.pth
	@touch $@

# The Uploads page (ui/uploads: Uppy bundled by esbuild, from package-lock.json) into the plugin.
UI_DIR := ui/uploads
UI_BUILT := plugins/dataset_ops/staging/webui/index.html
$(UI_BUILT): $(UI_DIR)/package-lock.json $(UI_DIR)/build.mjs $(wildcard $(UI_DIR)/src/*)
	@command -v npm >/dev/null 2>&1 || { echo "install: apt-get install nodejs npm"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	cd $(UI_DIR) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

install: $(STAMP) $(UI_BUILT)

lock:
	uv pip compile -q requirements.in -o requirements.txt
	uv pip compile -q requirements-dev.in -o requirements-dev.txt

services:
	@scripts/services.sh

# --- checks ---------------------------------------------------------------------------------
lint: install
	$(VENV)/bin/ruff check dags plugins tests benchmarks scripts

# Two pytest sessions side by side on the 2 cores: the tests that run a whole Airflow (the Celery
# and acceptance stacks, the demo; tests/conftest.py `--stacks`) and all the others; the first
# one's output follows the second's. `make test PYTEST_SPLIT=0` runs one session.
PYTEST_SPLIT ?= 1
test: install services lint
ifeq ($(PYTEST_SPLIT),1)
	@mkdir -p .data; \
	$(PY) -m pytest --stacks only $(PYTEST_ARGS) > .data/pytest-stacks.log 2>&1 & stacks=$$!; \
	echo "pytest --stacks only (Airflow stacks) runs beside this one; its output: .data/pytest-stacks.log"; \
	$(PY) -m pytest --stacks exclude $(PYTEST_ARGS); rest=$$?; \
	wait $$stacks; on_stacks=$$?; \
	echo "=== pytest --stacks only (exit $$on_stacks) ==="; cat .data/pytest-stacks.log; \
	exit $$(( rest != 0 || on_stacks != 0 ))
else
	$(PY) -m pytest $(PYTEST_ARGS)
endif

# --- local use --------------------------------------------------------------------------------
demo: install
	$(PY) scripts/demo.py

airflow: install
	$(PY) scripts/demo.py --ui

# the trigger-form pictures in docs/ (the browser tests, saving their screenshots there)
screenshots: install services
	DATASET_OPS_SCREENSHOTS=$(CURDIR)/docs $(PY) -m pytest tests/browser -q

# CeleryExecutor on the machine's PostgreSQL + Redis, two workers, S3 on a SeaweedFS server
distributed: install services
	$(PY) scripts/distributed.py $(DISTRIBUTED_ARGS)

bench: install
	$(call apt_ensure,$(BENCH_APT_PACKAGES))
	@scripts/services.sh
	$(PY) benchmarks/bench_imdb_copy.py $(BENCH_ARGS)

PANDAS2 := .data/bench/pandas2
bench-validation: install $(PANDAS2)/bin/python
	$(PY) benchmarks/bench_validation.py --pandas2-python $(PANDAS2)/bin/python $(BENCH_ARGS)

# pandas 2.3.3 (the last 2.x) as a second baseline, in its own venv
$(PANDAS2)/bin/python:
	uv venv -q -p $(PYTHON) $(PANDAS2)
	uv pip install -q -p $(PANDAS2)/bin/python pandas==2.3.3

# the IMDb read API against a seed-style one (wrk from Debian; its own database imdb_bench_api)
bench-imdb-api: install
	$(call apt_ensure,wrk)
	@scripts/services.sh
	$(PY) benchmarks/bench_imdb_api.py $(BENCH_ARGS)

bench-upload: install
	$(PY) benchmarks/bench_upload.py $(BENCH_ARGS)

bench-media: install
	$(PY) benchmarks/bench_media.py $(BENCH_ARGS)

bench-inference: install services
	$(PY) benchmarks/bench_inference.py $(BENCH_ARGS)

# 1 against 2 Celery workers (scripts/airflow_stack.py: PostgreSQL + Redis, SeaweedFS S3 started by the script)
bench-distributed: install services
	$(PY) benchmarks/bench_distributed.py $(BENCH_ARGS)

DLT := .data/bench/dlt
bench-ingest: install $(DLT)/bin/python
	$(PY) benchmarks/bench_ingest.py --dlt-python $(DLT)/bin/python $(BENCH_ARGS)

# dlt 1.31.0 (rest_api source, filesystem destination on S3 through s3fs) in its own venv
$(DLT)/bin/python:
	uv venv -q -p $(PYTHON) $(DLT)
	uv pip install -q -p $(DLT)/bin/python "dlt[filesystem,parquet,s3]==1.31.0"

clean:
	rm -rf .data .pytest_cache .ruff_cache
