# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PEER   := .venv-peer
# PyTorch + diffusers, only for the parity tests and benchmarks; never a package dependency.
# torch 2.13.0's CPU wheel lies in /opt/wheels on the project's machines.
PEER_PKGS := torch==2.13.0 diffusers==0.42.1 numpy
PIP_LOCAL := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: help setup system-data demo toy test test-fast peer lessons lab solutions bench clean

help:
	@echo "make demo       set up, then the main job: MNIST digits by class (outputs/demo/)"
	@echo "make toy        every sampler on the exact 2-D toy (outputs/toy/)"
	@echo "make test       set up (incl. the diffusers peer env), then run the whole test suite"
	@echo "make test-fast  skip tests marked slow"
	@echo "make lab        build the learner notebooks and open JupyterLab on them"
	@echo "make solutions  build the solution notebooks into build/solutions/"
	@echo "make bench      run the benchmarks in bench/ (JSON in outputs/bench/)"
	@echo "make peer       build .venv-peer with PyTorch + diffusers for parity checks"
	@echo "make clean      remove outputs and caches (keeps the virtualenvs)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# Debian ships all of Fashion-MNIST; install it where apt exists (optional: MNIST and
# CIFAR-10 have embedded or shared copies, so a failure here only costs that data set).
system-data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "WARNING: could not install dataset-fashion-mnist; Fashion-MNIST presets need its IDX files"; \
	fi

setup: $(STAMP) system-data

# The main job: train (or load) a class-conditional MNIST model, sample every digit,
# score the samples; the exact-toy sampler figure first (about 20 s).
demo: setup toy
	$(BIN)/diffusion-jax demo --out-dir outputs/demo

toy: setup
	$(BIN)/diffusion-jax toy --out-dir outputs/toy

$(PEER)/.installed:
	@$(PYTHON) -m venv $(PEER) && $(PEER)/bin/pip install -q $(PIP_LOCAL) $(PEER_PKGS) \
	  && touch $@ \
	  || (echo "WARNING: could not build $(PEER); diffusers parity tests will be skipped"; rm -rf $(PEER))

peer: $(PEER)/.installed

test: setup peer
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Learner notebooks a learner has edited are never overwritten (see tools/build_lessons.py).
lessons: setup
	$(BIN)/python tools/build_lessons.py

lab: lessons
	@$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/pip install -q -e '.[lessons]'
	$(BIN)/jupyter lab --notebook-dir=build/learner $(if $(filter 0,$(shell id -u)),--allow-root,)

solutions: setup
	$(BIN)/python tools/build_lessons.py --solutions-only

# Benchmarks print ratios measured in one run and write JSON to outputs/bench/.
bench: setup
	$(BIN)/python bench/sampling.py

clean:
	rm -rf outputs .pytest_cache
