# reidlib: two commands for a newcomer
#   make book   builds the HTML book from the committed results (runs only what is missing)
#   make test   unit tests + notebook tests (nbval) + a strict book build
#   make check-book  builds the book, then reads every page in headless Chromium, offline
#   make lab    JupyterLab on notebooks/ with the project's kernel (make notebook: the classic UI)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidlib-setup
PROFILE ?= cpu
JOBS ?= 1
NOTEBOOKS ?= $(shell $(PYTHON) -c "import json;print(' '.join(json.load(open('notebooks/order.json'))))")
BOOKFLAGS ?=
CHROMIUM ?= /usr/bin/chromium
CHECKFLAGS ?=
LABFLAGS ?=

.PHONY: setup book test unit nbval book-strict reproduce bench clean check-book chromium lab notebook

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
	$(PY) -m reidlib.runner.book prepare
	$(VENV)/bin/jupyter-book build . --path-output . $(BOOKFLAGS)
	@echo "The book is at $(CURDIR)/_build/html/index.html"

book-strict: $(STAMP)
	$(PY) -m reidlib.runner.book prepare
	$(VENV)/bin/jupyter-book build . --path-output . -W -n --keep-going --all

# The built book as a reader gets it: every page of _build/html opened in headless Chromium with the
# network off, through file:// and from a local server on 127.0.0.1; fails on requests leaving the
# book, broken links/anchors, missing images or alt text, console errors, unrendered TeX, and
# tables/code/equations wider than the page, broken table rows, figures without their own caption
# (scripts/check_book.py; options: CHECKFLAGS="--page book/span.html"). --self-test first: the checker must
# report a planted too-wide equation and a planted broken table row, or check-book fails.
check-book: book chromium
	$(PY) scripts/check_book.py --html _build/html --chromium $(CHROMIUM) --self-test
	$(PY) scripts/check_book.py --html _build/html --chromium $(CHROMIUM) $(CHECKFLAGS)

# Chromium from Debian's packages when missing (never a browser download). CI runs as root; elsewhere
# this uses sudo. fonts-dejavu-core: a known font, so the widths check-book measures are repeatable.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "No Chromium at $(CHROMIUM): install it (Debian: apt-get install chromium) or pass CHROMIUM=/path" >&2; exit 1; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	echo "Installing Chromium from Debian's packages (apt-get)"; \
	apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300"; \
	$$apt update && $$apt install -y --no-install-recommends chromium fonts-dejavu-core; \
	test -x "$(CHROMIUM)"

# Interactive: the notebooks in JupyterLab (or the classic Notebook 7 UI) with the venv's kernel,
# "Python 3 (reidlib)". Headless machine: make lab LABFLAGS=--no-browser (open the printed URL).
# (Jupyter refuses to run as root without --allow-root; CI machines and containers run as root.)
JUPYTER_ROOT = $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)/notebooks" $(JUPYTER_ROOT) $(LABFLAGS)

notebook: $(STAMP)
	$(VENV)/bin/jupyter notebook --ServerApp.root_dir="$(CURDIR)/notebooks" $(JUPYTER_ROOT) $(LABFLAGS)

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/

nbval: $(STAMP)
	$(VENV)/bin/pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

test: unit nbval book-strict

# JOBS notebooks at a time: one per GPU (CUDA_VISIBLE_DEVICES), at most one per CPU core; the
# summary notebook runs last. JOBS=1: one after the other, stopping at the first failure.
reproduce: $(STAMP)
	$(PY) -m reidlib.runner reproduce --profile $(PROFILE) --jobs $(JOBS) $(NOTEBOOKS)

bench: $(STAMP)
	set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf _build book/generated
