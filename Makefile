# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install what they need into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned: 2.13.0 (CPU build) is the release this project is developed and tested against.
TORCH := torch==2.13.0

.PHONY: demo test venv install-demo install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

install-demo: $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[plot]"

install-test: $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[test]"

demo: install-demo
	$(PY) -m probkit.demo --output-dir demo_output

test: install-test
	$(PY) -m pytest -n 2 -q tests probkit --doctest-modules

clean:
	rm -rf $(VENV) build *.egg-info demo_output
