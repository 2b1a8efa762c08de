# Two fresh-machine commands: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INSTALL_LOG := $(VENV)/install.log
# quiet unless it fails: the whole pip log is printed only when a step fails
QUIET = >>$(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); echo "install failed (log: $(INSTALL_LOG))" >&2; exit 1; }

.PHONY: demo test venv lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@: > $(INSTALL_LOG)
	@echo "installing into $(VENV) (log: $(INSTALL_LOG)) ..."
	@$(PY) -m pip install -q --upgrade pip $(QUIET)
	@# CPU torch first (a local wheel here), so nothing pulls multi-GB CUDA wheels
	@$(PY) -m pip install -q torch==2.13.0 $(QUIET)
	@$(PY) -m pip install -q -e '.[dev,train,cluster]' $(QUIET)
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/er demo

lint: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools sandbox trainers
	$(PY) -m mypy

test: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools sandbox trainers
	$(PY) -m mypy
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
