# Set-up and the two everyday jobs. Each target installs what it needs on a fresh machine
# (only python3 required); the virtual environment is built once (stamp file) and rebuilt when
# setup.py or the pins change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt

.PHONY: venv demo test

venv: $(STAMP)

# torch goes first and alone: the exact pin takes the local CPU build, while any looser
# requirement (recbole asks for plain `torch`) would download a multi-GB CUDA build. The
# constraints file then keeps torch and everything else at the tested versions.
$(STAMP): setup.py $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -c $(CONSTRAINTS) pip setuptools
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[test]"
	touch $@

# BiFairSASRec on the ml-100k copy inside the recbole wheel, offline text encoder: a few minutes on 2 CPU cores.
demo: $(STAMP)
	$(PY) run_recbole_bifair.py --model=BiFairSASRec --dataset=ml-100k --config_files=configs/demo.yaml

# pytest exits 5 when it collects nothing; that is reported, not treated as a crash.
test: $(STAMP)
	$(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc
