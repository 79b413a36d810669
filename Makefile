# One command each: `make demo` sets up and runs the main job, `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/memledger demo

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(VENV)/bin/memledger bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
