# Two entry points: `make demo` (the main job) and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU wheel of torch; GPU users install their CUDA torch into the venv first (see README).
TORCH ?= torch==2.13.0
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test lock clean

$(STAMP): pyproject.toml constraints.txt
	@echo "installing crysloop into $(VENV) (first run only; a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)" -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
	# mattersim declares torchvision/torchaudio (never imported) that would pull a CUDA torch: no deps here
	$(PY) -m pip install -q --disable-pip-version-check --no-deps mattersim==1.2.3
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/crysloop demo

test: $(STAMP)
	$(VENV)/bin/ruff check crysloop tests benchmarks
	$(VENV)/bin/ruff format --check crysloop tests benchmarks
	$(PY) -m pytest -q

# Re-resolve the pinned set after editing pyproject.toml (keeps the header of constraints.txt).
lock: $(STAMP)
	{ sed '/^[a-zA-Z]/,$$d' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -viE '^(mattersim|crysloop)=' \
	  | sed 's/+cpu$$//'; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
