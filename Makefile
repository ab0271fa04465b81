# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
DEMO_DIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test test-fast install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt setup.py | $(PY)
	$(PY) -m pip install -r requirements.txt -e .
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements-test.txt
	$(PY) -m pip install -r requirements-test.txt
	touch $@

install: $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(VENV)/bin/vertjax demo --out $(DEMO_DIR)

test: $(TEST_STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
