# The two commands a newcomer needs (see README.md):
#   make book   build the book (executes every notebook) into _build/html
#   make test   pytest for the package (Triton interpreter on CPU) + nbval for the notebooks
# Both create the environment in .venv first if it is missing or stale. The book's MathJax and mermaid
# (from PyPI and npm: .ci/vendor_assets.py) go to _build/vendor/, served by the book as _static.
#   make browser-test   the rendered book in headless Chromium, offline (tests/test_browser.py; also in make test)

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Keep every cache inside the checkout: nothing read from or written to $HOME.
export HF_HOME := $(CURDIR)/.cache/huggingface
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export JUPYTER_CONFIG_DIR := $(CURDIR)/.cache/jupyter/config
export JUPYTER_DATA_DIR := $(CURDIR)/.cache/jupyter/data
export JUPYTER_RUNTIME_DIR := $(CURDIR)/.cache/jupyter/runtime
export IPYTHONDIR := $(CURDIR)/.cache/ipython
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export XDG_CACHE_HOME := $(CURDIR)/.cache
export TRITON_CACHE_DIR := $(CURDIR)/.cache/triton
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
# The notebooks run the kernels' PyTorch reference on a CPU: a TRITON_INTERPRET=1 left in the caller's
# shell would route them through Triton's interpreter (~100x slower; chapter 8.1 took 390 s instead of 35).
# Only the unit tests set it, on their own command line.
unexport TRITON_INTERPRET

# The book's JavaScript libraries, served from _static so the HTML reads offline.
VENDOR := _build/vendor/vendor_assets.json

.PHONY: book test env clean benchmarks notebooks compare-env vendor browser-test

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo "== creating $(VENV) (pinned by constraints.txt)"
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[book,test]'
	@touch $(STAMP)

vendor: $(VENDOR)
$(VENDOR): $(STAMP) _config.yml .ci/vendor_assets.py
	$(PY) .ci/vendor_assets.py _build/vendor
	@touch $@

book: $(STAMP) $(VENDOR)
	@start=$$(date +%s); \
	$(VENV)/bin/jupyter-book build . -W -n --keep-going --builder html; rc=$$?; \
	echo "== book: $$(( $$(date +%s) - start )) s wall time (exit $$rc)"; \
	test -f _build/html/index.html || { echo "no _build/html/index.html"; exit 1; }; exit $$rc

# The unit tests run the Triton kernels in Triton's CPU interpreter (TRITON_INTERPRET=1, read when the kernels
# are defined, so a process of its own); the notebooks run as `make book` runs them (the PyTorch reference
# on a CPU), so their stored outputs are the book's. The interpreter is a correctness tool: on a learner's
# episode it is ~100x slower than the reference.
test: $(STAMP)
	@start=$$(date +%s); \
	TRITON_INTERPRET=1 $(PY) -m pytest tests/ -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	$(PY) -m pytest book/ --nbval-lax --nbval-sanitize-with book/nbval_sanitize.cfg \
	  -p no:cacheprovider $(PYTEST_ARGS); rc2=$$?; [ $$rc -ne 0 ] || rc=$$rc2; \
	echo "== test: $$(( $$(date +%s) - start )) s wall time (exit $$rc)"; exit $$rc

# The browser test alone: builds the HTML with notebook execution off (about 20 s) and checks every
# page offline in Chromium. After `make book`, `make browser-test BOOK_HTML=_build/html` checks that build.
browser-test: $(STAMP)
	@start=$$(date +%s); \
	$(if $(BOOK_HTML),BOOK_HTML=$(BOOK_HTML)) $(PY) -m pytest tests/test_browser.py -p no:cacheprovider -rs $(PYTEST_ARGS); rc=$$?; \
	echo "== browser-test: $$(( $$(date +%s) - start )) s wall time (exit $$rc)"; exit $$rc

# For authors: re-execute notebooks in place (as the tests run them) to refresh their stored outputs.
# make notebooks NB=book/04_mathematics/4_1_empirical_risk.ipynb
NB ?= $(shell find book -name '*.ipynb' -not -path '*/_build/*' -not -path '*/.ipynb_checkpoints/*')
notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=900 $(NB)

benchmarks: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH)

# The competitors of benchmarks/maml_speed.py (higher, torchopt) into .venv: the benchmark's environment
# only, never the package's dependencies (pyproject.toml), pinned against torch by constraints.txt.
compare-env: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -r benchmarks/requirements-compare.txt

clean:
	rm -rf _build .cache
