# Minga: `make run` serves the embedded default on http://127.0.0.1:8000; `make test` runs the suite.
# Both set up a fresh machine by themselves: a Python 3.12+ virtualenv, packages, translations,
# static files and (for the browser tests) Chromium.

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

# The first Python >= 3.12 found: pyenv's (selected by .python-version), then python3.13/3.12/3 on PATH.
PYTHON_CANDIDATES := $(shell command -v pyenv >/dev/null 2>&1 && pyenv which python 2>/dev/null) \
	$(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3) $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3) \
	$(shell command -v python3.13 python3.12 python3 2>/dev/null)
BASE_PYTHON := $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell $(p) -c 'import sys; print("$(p)") if sys.version_info >= (3, 12) else None' 2>/dev/null)))

.PHONY: help
help:
	@echo "make run     set up and serve Minga on http://127.0.0.1:8000 with demo data"
	@echo "make test    set up and run the whole test suite"
	@echo "make lint    ruff and Django's deploy check"
	@echo "make bench   benchmarks (bench/)"
	@echo "make soak    long reliability runs (fuzzing with more examples); prints their figures"
	@echo "make messages  refresh the translation catalogs after changing strings"

$(PY):
	@if [ -z "$(BASE_PYTHON)" ]; then \
	  echo "Minga needs Python 3.12 or newer (Django 6 refuses older ones); found none."; \
	  echo "Install Python 3.13 (e.g. 'pyenv install 3.13.0', which .python-version selects, or your"; \
	  echo "system's python3.13 package), then run make again."; \
	  exit 1; \
	fi
	@echo "Using $(BASE_PYTHON) ($$($(BASE_PYTHON) --version))"
	$(BASE_PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25"
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	touch $(STAMP)

.PHONY: install
install: $(STAMP) compiled-messages

# Compiled catalogs are built, not committed: msgfmt comes from gettext.
.PHONY: compiled-messages
compiled-messages: $(STAMP)
	@command -v msgfmt >/dev/null || { echo "Installing gettext (msgfmt)"; apt-get update -qq && apt-get install -y -qq gettext >/dev/null; }
	@$(PY) manage.py compilemessages --ignore=.venv -v 0

.PHONY: setup
setup: install
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py migrate --noinput -v 0

.PHONY: run
# run_periodic: reminders, the email sweep, digests and the attachment purge (celery beat's job
# in production) run beside the server, and stop with it.
run: setup
	$(PY) manage.py seed_demo
	@echo "Minga: http://127.0.0.1:8000"
	@$(PY) manage.py run_periodic & periodic=$$!; \
	  trap 'kill $$periodic 2>/dev/null' EXIT; \
	  $(PY) manage.py runserver 127.0.0.1:8000

.PHONY: chromium
chromium:
	@if ! command -v chromium >/dev/null; then \
	  echo "Installing Chromium for the browser tests (apt-get install -y chromium)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "Could not install Chromium: the browser tests will say so."; \
	fi

# Two xdist workers, a test database each: the suite's time halves on CI's two cores.
# PYTEST_WORKERS=0 runs it in one process (for pdb, or one test).
PYTEST_WORKERS ?= 2

.PHONY: test
test: install chromium
	MINGA_TESTING=1 $(PY) manage.py collectstatic --noinput -v 0
	MINGA_TESTING=1 $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Long reliability runs (docs/reliability.md): not in CI; each prints its `FAMILY: figure` line.
.PHONY: soak
soak: install
	MINGA_TESTING=1 $(PY) -m pytest soak -m soak -p no:randomly -q $(PYTEST_ARGS)

.PHONY: lint
lint: install
	$(VENV)/bin/ruff check .
	DEBUG=0 SECRET_KEY=lint-only-$$RANDOM$$RANDOM$$RANDOM$$RANDOM-not-a-real-secret-key-for-deploys ALLOWED_HOSTS=minga.example.org \
	  $(PY) manage.py check --deploy --fail-level WARNING

.PHONY: messages
messages: install
	$(PY) manage.py makemessages --all --ignore=.venv --ignore=bench --ignore=tests --no-obsolete --add-location=file
	$(PY) manage.py compilemessages --ignore=.venv -v 0

.PHONY: bench
bench: install
	$(PY) -m bench $(if $(SMOKE),--smoke,)

.PHONY: lock
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable --exclude pip > requirements.lock
