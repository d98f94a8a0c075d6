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

.PHONY: help setup demo toy test test-fast peer clean

help:
	@echo "make demo       set up, then run the main demo (writes outputs/)"
	@echo "make test       set up (incl. the diffusers peer env), then run the whole test suite"
	@echo "make test-fast  skip tests marked slow"
	@echo "make peer       build .venv-peer with PyTorch + diffusers for parity checks"
	@echo "make clean      remove outputs and caches (keeps the virtualenvs)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/diffusion-jax toy --out-dir outputs/toy

toy: demo

$(PEER)/.installed:
	@$(PYTHON) -m venv $(PEER) && $(PEER)/bin/pip install -q $(PIP_LOCAL) $(PEER_PKGS) \
	  && touch $@ \
	  || (echo "WARNING: could not build $(PEER); diffusers parity tests will be skipped"; rm -rf $(PEER))

peer: $(PEER)/.installed

test: setup peer
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf outputs .pytest_cache
