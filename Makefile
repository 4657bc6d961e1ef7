# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install what they need into it.
# `make docs` builds the documentation site into docs/_build/html (warnings are errors).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned: 2.13.0 (CPU build) is the release this project is developed and tested against.
TORCH := torch==2.13.0

.PHONY: demo test docs venv install-demo install-test install-docs clean

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

install-docs: $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[docs]"

demo: install-demo
	$(PY) -m probkit.demo --output-dir demo_output

test: install-test
	$(PY) -m pytest -n 2 -q tests probkit --doctest-modules

# Runs every user-guide example (doctest builder), then writes the HTML site. The gallery
# pages show committed full-run outputs (docs/update_gallery_outputs.py makes them).
docs: install-docs
	PROBKIT_DOCS_BUILDER=doctest $(PY) -m sphinx -W --keep-going -q -b doctest docs docs/_build/doctest
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build *.egg-info demo_output docs/_build docs/api/generated docs/auto_examples
