# Everything installs into .venv from the project's own files (pip; torch comes from the machine's disk).
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= VLM2Vec/VLM2Vec-V2.0
QUERY ?= a bar chart of quarterly revenue

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

PACKAGES := $(dir $(wildcard packages/*/pyproject.toml))

$(VENV)/.installed: core/pyproject.toml $(wildcard packages/*/pyproject.toml) requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e "core[local,server,chroma]" $(foreach p,$(PACKAGES),-e $(p)) -r requirements-dev.txt
	touch $@

demo: setup
	$(PY) examples/search_pdf_video.py --model "$(MODEL)" "$(QUERY)"

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check core tests bench examples
	$(PY) -m mypy

bench: setup
	$(PY) bench/encode.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
