# One virtual environment in .venv, created on first use; every target goes through it.
# Another interpreter gets its own (make test PYTHON=python3.13 uses .venv-python3.13).
PYTHON ?= python3
ifeq ($(PYTHON),python3)
VENV ?= .venv
else
VENV ?= .venv-$(notdir $(PYTHON))
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest binary deb smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/edgegw serve --config config.example.toml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

binary: $(STAMP)
	$(BIN)/pip install --quiet -e '.[build]'
	build/build.sh

# build/out/edgegw_<version>_<arch>.deb around the executable (dpkg-deb only).
deb: binary
	build/deb.sh build/out/dist/edgegw build/out

smoke: deb
	build/smoke.sh
	build/check-deb.sh build/out/edgegw_$$(build/out/dist/edgegw --version | cut -d' ' -f2)_$$(dpkg --print-architecture).deb

clean:
	rm -rf $(VENV) build/out .pytest_cache .mypy_cache .ruff_cache
