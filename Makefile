# Yiwang: `make demo` (set-up + the demo city at http://127.0.0.1:8050), `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8050
DATA_DIR ?= data

.PHONY: setup demo serve test bench soak lint fmt browser-deps bench-deps load clean

# Re-installs only when pyproject.toml changes; a second `make` is instant.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/yiwang demo --port $(PORT) --data-dir $(DATA_DIR)

serve: setup
	$(BIN)/yiwang serve --port $(PORT) --data-dir $(DATA_DIR)

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python tests/benchmarks/run.py $(BENCH_ARGS)

# 50 wall screens + 200 department users on one embedded server (locust, 127.0.0.1 only):
# LOAD_ARGS="--minutes 5 --walls 50 --staff 200"
load: setup
	$(BIN)/python -c "import locust" 2>/dev/null || $(BIN)/pip install -q --disable-pip-version-check -e ".[dev,load]"
	$(BIN)/python tests/load/run.py $(LOAD_ARGS)

# Wall screen left running (not part of `make test`): SOAK_ARGS="--minutes 5 --refresh 2"
soak: setup
	$(BIN)/python tests/soak.py $(SOAK_ARGS)

lint: setup
	$(BIN)/ruff check .

fmt: setup
	$(BIN)/ruff check --fix .

# Debian's Chromium and CJK fonts for the browser tests (never `playwright install`).
browser-deps:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk)

# The MQTT benchmark's broker and publisher (bench_mqtt starts its own mosquitto on a free port).
bench-deps:
	command -v mosquitto_pub >/dev/null || (apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
