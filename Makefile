# PromptLine developer commands. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9

.PHONY: install run test lint format bench bench-agents lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	$(PY) -m compileall -q -j 0 src
	@touch $(STAMP)

# The gateway in the foreground on gateway.host:gateway.port (127.0.0.1:8080); Ctrl-C stops it.
run: install
	$(VENV)/bin/promptline db upgrade
	$(VENV)/bin/promptline serve

# One test worker per core (pytest-xdist); a file's tests stay on one worker.
PYTEST_WORKERS ?= auto

test: install lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --cov --cov-report=term $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy src

format: install
	$(PY) -m ruff format src tests bench
	$(PY) -m ruff check --fix src tests bench

bench: install
	$(PY) bench/run_all.py

# The agent-framework comparison runs in its own venv, .venv-bench: the frameworks are pinned in
# bench/frameworks/requirements.txt and are never PromptLine dependencies. BENCH_ARGS=--quick
# for a smoke run, --no-callgrind to skip the instruction counts.
bench-agents:
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet --disable-pip-version-check \
		-r bench/frameworks/requirements.txt
	.venv-bench/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	.venv-bench/bin/python bench/bench_agents.py $(BENCH_ARGS)

# Re-pin every dependency (run after editing pyproject.toml).
lock: install
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
