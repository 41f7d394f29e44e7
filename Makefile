# Two commands matter: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit docs bench clean test-compat test-scale services mutate

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m airflow_provider_xai.testing.demo --dags-folder example_dags

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The redis-server and PostgreSQL binaries that tests start (the shared limiter's tests, the
# Celery deployment): found on the machine, else installed (scripts/ensure_services.py, standard
# library only), written as XAI_TEST_REDIS_SERVER / XAI_TEST_PG_BIN for the runs below to source.
SERVICES_ENV := .services.env
with_services = set -a && . "$(abspath $(SERVICES_ENV))" && set +a &&
services:
	$(PYTHON) scripts/ensure_services.py > $(SERVICES_ENV).tmp && mv $(SERVICES_ENV).tmp $(SERVICES_ENV)

# The browser test's Chromium: found on the machine, else installed (scripts/ensure_browser.py).
# The Celery deployment (marked celery) is left to test-scale.
test: lint typecheck docs test-compat services
	browser="$$($(BIN)/python scripts/ensure_browser.py)" && $(with_services) \
	XAI_E2E_CHROMIUM="$$browser" $(BIN)/python -m pytest -m "not celery"

# The CeleryExecutor deployment and the scale run (tests/e2e/test_celery.py); the scale figures
# go to benchmarks/results/scale.json. .ci/run runs it after `make test`.
test-scale: $(STAMP) services
	$(with_services) XAI_SCALE_RESULTS=benchmarks/results/scale.json $(BIN)/python -m pytest -m celery tests/e2e/test_celery.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Mutation testing (mutmut; docs/development.md, "Mutation testing"): small bugs planted one at a
# time in the modules that pyproject.toml's [tool.mutmut] only_mutate names (where a bug costs
# users money or secrets), each run against the unit tests that reach it. Not part of `make test`.
# Incremental: a second run redoes only what changed (`rm -rf mutants` starts afresh). Then the
# score per module, and the survivors (`$(BIN)/mutmut show NAME` shows one).
MUTATE_JOBS ?= 2
mutate: $(STAMP)
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) > mutants.log 2>&1 || { tail -n 40 mutants.log; exit 1; }
	$(BIN)/mutmut results --all true > mutants.txt
	$(BIN)/python scripts/mutation_score.py < mutants.txt
	@grep -E ": (survived|no tests)$$" mutants.txt || echo "No survivors."

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache site $(COMPAT_ENVS:%=.venv-%) $(SERVICES_ENV) mutants mutants.log mutants.txt

# Declared support is tested support (docs/development.md, "Supported versions"): the unit and
# integration suites also run on the oldest supported Airflow with the oldest Python, and on the
# other declared Pythons, each in a venv of its own built from its own constraints file.
# The interpreters come from pyenv (part of the machine image) or PATH; override with
# PYTHON310=/path/to/python3.10 and so on. A missing one fails: nothing is skipped.
PYENV_ROOT ?= $(HOME)/.pyenv
find_python = $(firstword $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)) $(shell command -v python$(1) 2>/dev/null))
PYTHON310 ?= $(call find_python,3.10)
PYTHON312 ?= $(call find_python,3.12)
PYTHON313 ?= $(call find_python,3.13)
COMPAT_ENVS := py310-airflow32 py312 py313

# $(1) env name, $(2) interpreter, $(3) Python version, $(4) constraints file
define compat_env
.venv-$(1)/.installed: pyproject.toml $(4)
	@test -n "$(2)" || { echo "No Python $(3) for the $(1) run: pyenv install $(3), or make PYTHON$(subst .,,$(3))=/path/to/python$(3)"; exit 1; }
	test -x .venv-$(1)/bin/python || $(2) -m venv .venv-$(1)
	.venv-$(1)/bin/python -m pip install --quiet --upgrade pip
	.venv-$(1)/bin/python -m pip install --quiet -c $(4) -e '.[test]'
	touch $$@

.PHONY: test-compat-$(1)
test-compat-$(1): .venv-$(1)/.installed services
	$(with_services) .venv-$(1)/bin/python -m pytest tests/unit tests/integration
endef
$(eval $(call compat_env,py310-airflow32,$(PYTHON310),3.10,constraints-airflow-3.2.txt))
$(eval $(call compat_env,py312,$(PYTHON312),3.12,constraints.txt))
$(eval $(call compat_env,py313,$(PYTHON313),3.13,constraints.txt))

test-compat: $(COMPAT_ENVS:%=test-compat-%)
