# Everything installs into .venv from the project's own files (pip; torch comes from the machine's disk).
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= VLM2Vec/VLM2Vec-V2.0
BASE_MODEL ?=
BASE := $(if $(BASE_MODEL),--base-model "$(BASE_MODEL)")
QUERY ?= a bar chart of quarterly revenue

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

PACKAGES := $(dir $(wildcard packages/*/pyproject.toml))

$(VENV)/.installed: core/pyproject.toml $(wildcard packages/*/pyproject.toml) requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e "core[local,server,chroma,eval,ui,ray,mcp]" $(foreach p,$(PACKAGES),-e $(p)) -r requirements-dev.txt
	touch $@

# The main job: index the sample PDF and video (examples/data), then search them.
demo: setup
	$(VENV)/bin/vlm2vec index examples/data --model "$(MODEL)" $(BASE) --db .vlm2vec --clip-seconds 5
	$(VENV)/bin/vlm2vec search "$(QUERY)" --model "$(MODEL)" $(BASE) --db .vlm2vec --sheet .vlm2vec/hits.png

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: setup
	$(PY) bench/encode.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
