# physgan: two commands on a fresh machine (Python >= 3.10 with venv and pip)
#   make demo   set up .venv and run the quickstart (simulate, train a few minutes on CPU, generate, evaluate, report)
#   make test   set up .venv and run the test suite
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
DOMAIN ?= calo

.PHONY: demo test setup lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build first: a bare 'torch' requirement would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/physgan quickstart $(DOMAIN) --dir quickstart --overwrite

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check physgan tests bench

clean:
	rm -rf quickstart .pytest_cache .ruff_cache
