# The two commands of the README:
#   make demo   set up .venv and run the main job on the embedded default
#   make test   set up .venv and run the tests (what CI runs)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint clean

# setuptools' notice on every editable install (folders named like the package) is about layouts
# unlike ours, where the folder is the package: the install filters it to stay quiet.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' $(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rtdecode demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	@$(VENV)/bin/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure"; exit 1; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache .hypothesis
