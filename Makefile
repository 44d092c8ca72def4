# The README's two commands are `make demo` and `make test`; everything installs from the package registries.
VENV ?= .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: install tools test lint typecheck unit integration bench demo clean
# helm lives in .tools/bin (see .ci/tools); the tests find it on PATH.
export PATH := $(CURDIR)/.tools/bin:$(PATH)

$(VENV)/.installed: pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv venv --allow-existing --python "$$(command -v python3)" $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install --quiet -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

# helm, Prometheus/promtool and Chromium: the chart, alert-rule and browser tests drive them for real.
tools:
	bash .ci/tools

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy cannot follow setuptools' package-dir mapping through an editable install, so it checks a tree of
# symlinks laid out as the installed package (always current, nothing to reinstall).
typecheck: install
	@rm -rf build/typecheck && mkdir -p build/typecheck/jobprov
	@for f in jobprov/*; do ln -s "$$PWD/$$f" build/typecheck/jobprov/; done
	@for d in emitters schemas stream_processors sinks query; do ln -s "$$PWD/$$d" build/typecheck/jobprov/$$d; done
	cd build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p jobprov

unit: install
	$(PY) -m pytest tests/unit

integration: install tools
	$(PY) -m pytest tests/integration

# The test command: style, types, then every test (unit and integration on a real broker).
test: lint typecheck tools
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/emit.py

clean:
	rm -rf build .tools .mypy_cache .pytest_cache .ruff_cache

# The demo: a local broker, four weeks of nightly jobs through the real emitters, read back and summarised.
demo: install
	$(PY) examples/campaign.py
