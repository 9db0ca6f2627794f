# reidlib: two commands for a newcomer
#   make book   builds the HTML book from the committed results (runs only what is missing)
#   make test   unit tests + notebook tests (nbval) + a strict book build
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidlib-setup
PROFILE ?= cpu
NOTEBOOKS ?= $(shell $(PYTHON) -c "import json;print(' '.join(json.load(open('notebooks/order.json'))))")
BOOKFLAGS ?=

.PHONY: setup book test unit nbval book-strict reproduce bench clean

setup: $(STAMP)

# Idempotent: re-runs only when the lock or pyproject change. torch/torchvision come pinned as a
# registry pair (the machine's local CPU-only torch wheel cannot load the registry's torchvision).
$(STAMP): requirements-lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (reidlib)" >/dev/null
	$(PY) -c "import torch, torchvision, reidlib; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m reidlib.book prepare
	$(VENV)/bin/jupyter-book build . --path-output . $(BOOKFLAGS)
	@echo "The book is at $(CURDIR)/_build/html/index.html"

book-strict: $(STAMP)
	$(PY) -m reidlib.book prepare
	$(VENV)/bin/jupyter-book build . --path-output . -W -n --keep-going --all

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/

nbval: $(STAMP)
	$(VENV)/bin/pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

test: unit nbval book-strict

reproduce: $(STAMP)
	set -e; for nb in $(NOTEBOOKS); do $(PY) -m reidlib.experiments run $$nb --profile $(PROFILE); done

bench: $(STAMP)
	set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf _build book/generated
