# Two commands are all a fresh machine needs:
#   make run    create .venv, install, run the main job on the built-in default
#   make test   create .venv, install, lint and run the test suite (tests marked slow excluded, ~5 min on 2 cores)
#   make test-all   the same with the slow tests (training, quickstart, signals; CI runs this)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-all lint clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) scripts/quickstart.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q -m "not slow" $(ARGS)

test-all: lint
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
