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

.PHONY: pretrained help setup system-data demo toy test test-all test-fast peer lessons lab solutions bench bench-peer clean clean-all test-browser book

help:
	@echo "make demo       set up, then the main job: MNIST digits by class (outputs/demo/)"
	@echo "make toy        every sampler on the exact 2-D toy (outputs/toy/)"
	@echo "make test       set up (incl. the diffusers peer env), then run the whole test suite"
	@echo "make test-all   the same plus the tests marked heavy (long learner runs, benchmark smoke runs)"
	@echo "make test-fast  skip tests marked slow"
	@echo "make lab        build the learner notebooks (no solutions) and open JupyterLab on them"
	@echo "make solutions  build the worked solutions into build/solutions/ (only on request)"
	@echo "make test-browser  run lessons 01 and 06 in JupyterLab + headless Chromium (outputs/browser/)"
	@echo "make book       the executed solution notebooks as an HTML book (build/book/_build/html/; BOOK_FAST=1: quick)"
	@echo "make bench      run the benchmarks in bench/ (JSON in outputs/bench/; BENCH_ARGS=--quick)"
	@echo "make bench-peer build .venv-peer (PyTorch + diffusers) for the benchmarks' peer columns"
	@echo "make peer       build .venv-peer with PyTorch + diffusers for parity checks"
	@echo "make pretrained rebuild the shipped reference weights in data/pretrained/ (hours; PRETRAINED_ARGS=mnist-unet ...)"
	@echo "make clean      remove outputs/, build/solutions/, build/book/ and test caches"
	@echo "                (keeps your notebooks in build/learner/, trained models, virtualenvs)"
	@echo "make clean-all  clean, and the trained-model cache (data/checkpoints/, data/cache/;"
	@echo "                later runs retrain); never data/pretrained/, build/learner/ or virtualenvs"

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

# The main job: the exact-toy sampler figure, then train a class-conditional MNIST model,
# sample every digit, score the samples; each phase is timed (outputs/demo/metrics.json).
demo: setup
	$(BIN)/diffusion-jax demo --out-dir outputs/demo

toy: setup
	$(BIN)/diffusion-jax toy --out-dir outputs/toy

$(PEER)/.installed:
	@$(PYTHON) -m venv $(PEER) && $(PEER)/bin/pip install -q $(PIP_LOCAL) $(PEER_PKGS) \
	  && touch $@ \
	  || (echo "WARNING: could not build $(PEER); diffusers parity tests will be skipped"; rm -rf $(PEER))

peer: $(PEER)/.installed

# Two pytest-xdist workers (TEST_WORKERS=0 runs in one process): the suite is mostly XLA
# compilation and notebook kernels, which a second worker overlaps (tests/conftest.py
# keeps each test file, and each lesson, in one worker).
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test: setup peer
	$(BIN)/python -m pytest -q -m "not heavy" $(XDIST)

# Everything, including the tests marked heavy (the learner runs of lessons 07, 08, 09 and
# 12, the benchmarks' quick runs): about 10 minutes more than `make test`.
test-all: setup peer
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not heavy" $(XDIST)

# Learner notebooks only: the worked solutions are built by `make solutions`, on request, so
# they do not sit next to the exercises. An edited learner notebook is never overwritten
# (see tools/build_lessons.py). `diffusion-jax progress` grades what the learner saved.
lessons: setup
	$(BIN)/python tools/build_lessons.py

lab: lessons
	@$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/pip install -q -e '.[lessons]'
	$(BIN)/jupyter lab --notebook-dir=build/learner $(if $(filter 0,$(shell id -u)),--allow-root,)

solutions: setup
	$(BIN)/python tools/build_lessons.py --solutions-only

# Benchmarks print ratios measured in one run and write JSON to outputs/bench/.
# Every script interleaves its variants and prints min/median; `make bench BENCH_ARGS=--quick`
# is a smoke run. The PyTorch/diffusers columns need .venv-peer (built by bench-peer; a failed
# build only skips those columns).
BENCH_ARGS ?=
bench: setup bench-peer
	$(BIN)/python bench/train_throughput.py $(BENCH_ARGS)
	$(BIN)/python bench/sampling.py $(BENCH_ARGS)
	$(BIN)/python bench/efficiency.py $(BENCH_ARGS)
	$(BIN)/python bench/scaling.py $(BENCH_ARGS)
	$(BIN)/python bench/quality_vs_steps.py $(BENCH_ARGS)
	$(BIN)/python bench/steps_per_dispatch.py $(BENCH_ARGS)
	$(BIN)/python bench/time_to_quality.py $(BENCH_ARGS)
	$(BIN)/python bench/demo_phases.py $(BENCH_ARGS)

# The shipped reference weights (data/pretrained/): retrain every artifact with its recorded
# recipe and rewrite the manifest. Hours on 2 CPU cores; not part of CI (which checks them).
pretrained: setup
	$(BIN)/python tools/make_pretrained.py $(PRETRAINED_ARGS)

# PyTorch + diffusers for the benchmarks' peer columns, in their own environment.
bench-peer: $(PEER)/.installed

# Lessons in a real browser: JupyterLab driven by Debian's Chromium through Playwright
# (never `playwright install`, which downloads a browser). BROWSER_ARGS="--lessons 01" etc.
test-browser: setup
	@if [ ! -x /usr/bin/chromium ] || [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null) \
	    || echo "WARNING: could not apt-get install chromium fonts-noto-color-emoji"; \
	  fi; \
	fi
	@$(BIN)/python -c "import playwright, jupyterlab" 2>/dev/null || $(BIN)/pip install -q -e '.[browser]'
	$(BIN)/python tools/browser_test.py $(BROWSER_ARGS)

# The executed solution notebooks as a static HTML book with jupyter-book 1.x; any Sphinx
# warning fails the build. Full mode by default, from the shipped models in data/pretrained/
# (see lessons/README.md for the time per lesson); BOOK_FAST=1 for a quick fast-mode book.
book: setup
	@if [ ! -f /usr/share/javascript/mathjax/MathJax.js ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjs-mathjax >/dev/null) \
	  || echo "WARNING: could not apt-get install libjs-mathjax; equations will need MathJax's CDN"; \
	fi
	@$(BIN)/python -c "import jupyter_book" 2>/dev/null || $(BIN)/pip install -q -e '.[book]'
	$(BIN)/python tools/build_book.py

# `clean` removes what any target regenerates quickly; `clean-all` also the trained-model
# cache (where DIFFUSION_JAX_CACHE points, if set; in a worktree whose data/checkpoints is a
# symlink only the link goes). Neither touches data/pretrained/ (shipped weights), the data
# sets, build/learner/ (notebooks a learner may have edited) or the virtualenvs.
CACHE_ROOT := $(or $(DIFFUSION_JAX_CACHE),data)

clean:
	rm -rf outputs .pytest_cache build/solutions build/book book/_build
	find . \( -path ./.venv -o -path ./.venv-peer \) -prune -o -name __pycache__ -type d -exec rm -rf {} +

clean-all: clean
	rm -rf $(CACHE_ROOT)/checkpoints $(CACHE_ROOT)/cache
