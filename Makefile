# Two commands on a fresh machine: `make demo` and `make test`. Each builds its own virtual environment.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser prometheus

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/amiflow demo --out demo-out

test: $(STAMP) browser prometheus
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# headless Chromium renders the HTML report and drives the dashboard (chromedriver) in tests; installed from Debian's
# packages where we may
browser:
	@(command -v chromium && command -v chromedriver) >/dev/null 2>&1 || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
		echo "chromium/chromium-driver not installed: the report render and dashboard browser tests will skip"

# a real Prometheus scrapes `amiflow serve` and promtool checks deploy/prometheus's rules (tests/security); Debian's
# package, without the exporters it recommends; its service is not used (the test starts its own on a free port)
prometheus:
	@(command -v prometheus && command -v promtool) >/dev/null 2>&1 || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) || \
		echo "prometheus not installed: the Prometheus tests will skip"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .amiflow demo-out
