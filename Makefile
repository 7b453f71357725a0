# gpucloud: `make run` serves the control plane, `make test` runs the whole suite. See README.md.
SHELL := /bin/bash
PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DJANGO_SETTINGS_MODULE ?= config.settings.dev
# The sandbox's fleet expander needs PyYAML: the project's virtualenv has it (skipped when absent).
export GPUCLOUD_SANDBOX_PYTHON ?= $(abspath $(PY))

-include sandbox/sandbox.mk

.PHONY: help venv venv-run services migrate run test unit lint typecheck pytest lock clean stripe-mock browser s3 chart \
	bench fuzz chaos first-run-check

# Every public target, one line each (tests/config/test_make_help.py checks that none is missing).
help:
	@echo "Usage: make <target> [VARIABLE=value ...]"
	@echo "  run                 set up everything and serve http://127.0.0.1:8000 with a worker, beat and the operator"
	@echo "  test                set up everything and run ruff, mypy and the whole test suite"
	@echo "  unit                the tests that need only PostgreSQL and Redis (no sandbox, stripe-mock, S3, browser)"
	@echo "  pytest              pytest alone against the tests' sandbox instance (PYTEST_ARGS=...)"
	@echo "  lint                ruff check and ruff format --check"
	@echo "  typecheck           mypy on apps, config, gpucloud_cli and tests"
	@echo "  venv                the virtualenv with the locked runtime and dev dependencies"
	@echo "  venv-run            the virtualenv with the runtime dependencies only (what make run needs)"
	@echo "  services            install and start PostgreSQL and Redis on 127.0.0.1 when missing"
	@echo "  migrate             apply the database migrations"
	@echo "  lock                refresh requirements/constraints.txt from a fresh resolve"
	@echo "  clean               remove the virtualenv, var/ and the tools' caches"
	@echo "  stripe-mock         start stripe-mock on 127.0.0.1:12111 for the Stripe contract tests"
	@echo "  s3                  start SeaweedFS (S3 and IAM) on 127.0.0.1:18333 for object storage"
	@echo "  browser             install Debian's Chromium for the browser tests (tests/browser/)"
	@echo "  chart               helm lint, template and a server-side dry run of helm/gpucloud"
	@echo "  bench               every benchmark (or BENCH=<name> [SIZE=<n>], SIZES=a,b,c for operator_scale), then fuzz"
	@echo "  fuzz                schemathesis against the API schema, FUZZ_EXAMPLES per operation"
	@echo "  chaos               the resilience drills (tests/chaos, docs/resilience.md)"
	@echo "  first-run-check     time make run on a fresh clone with empty caches (slow: a cold Go build)"
	@echo "  sandbox             build what is missing and start the local Kubernetes regions (docs/sandbox.md)"
	@echo "  sandbox-build       only build the sandbox's binaries (kubernetes, etcd, kwok, helm, stripe-mock)"
	@echo "  sandbox-start       start the sandbox's regions (SANDBOX_INSTANCE=default unless given)"
	@echo "  sandbox-stop        stop the sandbox's processes"
	@echo "  sandbox-status      each region's processes and /readyz"
	@echo "  sandbox-env         shell exports for the sandbox (eval \"\$$(make -s sandbox-env)\")"
	@echo "  test-sandbox        start the tests' own sandbox instance (TEST_SANDBOX_INSTANCE=test)"
	@echo "  test-sandbox-reset  start the tests' sandbox instance afresh (make test does)"
	@echo "  bench-sandbox       start the benchmarks' sandbox instance"
	@echo "  help                this list"

# uv installs the locked dependencies (parallel downloads: 36 s instead of pip's 2 min 18 s for the runtime
# ones on a fresh machine, docs/sandbox.md "First run"); pip only installs uv itself.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
RUN_STAMP := $(VENV)/.installed-run

$(UV):
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)

# What `make run` needs: the runtime dependencies (no test, lint or browser tooling).
# scripts/pdf_libs.sh: the Debian libraries (Pango, a font) WeasyPrint renders invoice PDFs with.
$(RUN_STAMP): pyproject.toml requirements/constraints.txt | $(UV)
	@bash scripts/pdf_libs.sh
	$(UV) pip install -q --python $(PY) -c requirements/constraints.txt -e .
	@touch $@

$(STAMP): pyproject.toml requirements/constraints.txt | $(UV)
	@bash scripts/pdf_libs.sh
	$(UV) pip install -q --python $(PY) -c requirements/constraints.txt -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

venv: $(STAMP)
venv-run: $(RUN_STAMP)

services:
	@bash scripts/services.sh

migrate: venv services
	$(PY) manage.py migrate --noinput

# Serves as soon as the virtualenv, PostgreSQL, Redis and migrations are ready; the Go builds (started first, at
# the lowest CPU priority), the sandbox, SeaweedFS and the regions' connections continue in the background
# (scripts/run.sh migrates and starts the servers, scripts/bring_up.py the rest).
# SANDBOX=0 skips the local Kubernetes regions (then point GPUCLOUD_REGION_KUBECONFIGS at your clusters).
SANDBOX ?= 1
run: venv-run services
	@GPUCLOUD_SANDBOX_INSTANCE=$(SANDBOX_INSTANCE) SANDBOX=$(SANDBOX) bash scripts/run.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the apps' layer order (.importlinter, docs/architecture.md)

typecheck: venv
	$(VENV)/bin/mypy apps config gpucloud_cli tests

# The tests' own sandbox instance (docs/sandbox.md, "Instances"): never make run's.
pytest: venv services
	GPUCLOUD_SANDBOX_INSTANCE=$(TEST_SANDBOX_INSTANCE) DJANGO_SETTINGS_MODULE=config.settings.test \
		$(VENV)/bin/pytest $(PYTEST_ARGS)

# The fast loop: every test that needs only PostgreSQL and Redis. Tests that use the sandbox, stripe-mock, S3
# or a browser are marked from their fixtures (tests/conftest.py), the chaos drills and fuzzing by hand.
UNIT_MARKS := not sandbox and not stripe and not s3 and not browser and not chaos and not fuzz
unit: venv services
	DJANGO_SETTINGS_MODULE=config.settings.test $(VENV)/bin/pytest -q -p no:cacheprovider -m "$(UNIT_MARKS)" \
		$(PYTEST_ARGS)

# stripe-mock on 127.0.0.1:12111 for the Stripe contract tests (scripts/stripe_mock.sh; stop: `... stop`).
stripe-mock:
	@bash scripts/stripe_mock.sh start

# SeaweedFS (S3 + IAM) on 127.0.0.1:18333 for object storage (scripts/s3.sh, built from its Go module on
# first use; stop: `bash scripts/s3.sh stop`). A server that cannot start fails the target.
s3:
	@bash scripts/s3.sh start

# Debian's Chromium for the browser tests (tests/browser/, Playwright; scripts/browser.sh).
browser:
	@bash scripts/browser.sh

# helm/gpucloud: lint, template and a server-side dry run against the tests' sandbox instance
# (scripts/chart_check.sh); tests/helm/ installs it into that instance and checks its RBAC under pytest.
chart: test-sandbox
	@GPUCLOUD_SANDBOX_INSTANCE=$(TEST_SANDBOX_INSTANCE) bash scripts/chart_check.sh

# The tests' sandbox instance is started afresh first (test-sandbox-reset): nothing an earlier run left.
test: venv services test-sandbox-reset chart stripe-mock s3 browser lint typecheck pytest

# Benchmarks (bench/, docs/benchmarks.md): every one at its default size (operator_scale at 1,000, 5,000 and
# 20,000 pods), then `make fuzz` with its larger example count; or one: BENCH=<name> [SIZE=<n>]
# (`make bench BENCH=launch_latency SIZE=50`), or operator_scale's size curve: SIZES=1000,5000,20000; no
# fuzzing then. Each benchmark creates its database first (bench/db.py) and waits for the load average to
# settle (at most BENCH_SETTLE_SECONDS, 300). Results in var/bench/; a full run rewrites docs/benchmarks.md.
# Fuzzing runs even if a benchmark failed.
BENCH ?= all
bench: venv services bench-sandbox s3 stripe-mock
	DJANGO_SETTINGS_MODULE=bench.settings $(PY) -m bench $(BENCH) $(if $(SIZE),--n $(SIZE)) \
		$(if $(SIZES),--sizes $(SIZES)); status=$$?; \
		$(if $(filter all,$(BENCH)),$(MAKE) fuzz || status=1;) exit $$status

# schemathesis against /api/v1/schema/ (tests/fuzz, docs/api.md "Fuzzing"): `make test` runs it with 25
# examples per operation and a fixed seed; this runs FUZZ_EXAMPLES (200) per operation with random seeds.
FUZZ_EXAMPLES ?= 200
fuzz: venv services stripe-mock s3
	DJANGO_SETTINGS_MODULE=config.settings.test FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RANDOM=1 \
		$(VENV)/bin/pytest tests/fuzz -m fuzz -q -p no:cacheprovider

# The resilience drills alone (tests/chaos, docs/resilience.md): processes killed, an apiserver, PostgreSQL
# and stripe-mock down during a churn. `make test` runs them too (about 5 minutes on 2 cores).
chaos: venv services test-sandbox stripe-mock
	GPUCLOUD_SANDBOX_INSTANCE=$(TEST_SANDBOX_INSTANCE) DJANGO_SETTINGS_MODULE=config.settings.test \
		$(VENV)/bin/pytest tests/chaos -m chaos -q -p no:cacheprovider

# `make run` on a fresh clone of HEAD with empty caches (its own HOME, Go caches, gpucloud cache, pip cache,
# ports and database), timed: console answering, regions connected (docs/sandbox.md "First run"). Slow (a
# cold Go build): not part of `make test`.
first-run-check:
	@bash scripts/first_run_check.sh

lock:
	rm -rf /tmp/gpucloud-lock && $(PYTHON_BIN) -m venv /tmp/gpucloud-lock
	/tmp/gpucloud-lock/bin/pip install -q --upgrade pip && /tmp/gpucloud-lock/bin/pip install -q -e '.[dev]'
	/tmp/gpucloud-lock/bin/pip freeze --exclude-editable | grep -v '^gpucloud' > requirements/constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
