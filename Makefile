# kyso — two commands: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_PACKAGES := python3-venv softhsm2 opensc-pkcs11 poppler-utils libnss3-tools qpdf fonts-dejavu-core openssl xmlsec1
TEST_PACKAGES := $(DEMO_PACKAGES) mupdf-tools chromium

.PHONY: demo test bench system-packages-demo system-packages-test clean

demo: system-packages-demo $(VENV)/.installed
	$(BIN)/python -m demo.run

test: system-packages-test $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

PEAK_DAY_DOCUMENTS ?= 2000

bench: system-packages-demo $(VENV)/.installed
	$(BIN)/python -m bench.signing
	$(BIN)/python -m bench.csc
	$(BIN)/python -m bench.pades
	$(BIN)/python -m bench.workers
	$(BIN)/python -m bench.server_cpu
	$(BIN)/python -m bench.peak_day --documents $(PEAK_DAY_DOCUMENTS)
	$(BIN)/python -m bench.history

system-packages-demo:
	@scripts/install-system-packages $(DEMO_PACKAGES)

system-packages-test:
	@scripts/install-system-packages $(TEST_PACKAGES)

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) .kyso-demo demo-out .pytest_cache
