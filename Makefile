# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv with the pinned dependencies when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.graphrec-installed

.PHONY: demo test lint tune bench-baselines bench-multi bench-speed bench-scaling constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/graphrec demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check graphrec tests benchmarks

# DATASET=retailrocket runs the same commands on another dataset.
DATASET ?= tmall

tune: $(STAMP)
	$(BIN)/python benchmarks/tune.py --config benchmarks/configs/baselines.json --dataset $(DATASET)
	$(BIN)/python benchmarks/tune.py --config benchmarks/configs/multi.json --dataset $(DATASET)

bench-baselines: $(STAMP)
	$(BIN)/python benchmarks/run.py --config benchmarks/configs/baselines.json --dataset $(DATASET) --seeds 0 1 2

bench-multi: $(STAMP)
	$(BIN)/python benchmarks/run.py --config benchmarks/configs/multi.json --dataset $(DATASET) --seeds 0 1 2

bench-speed: $(STAMP)
	$(BIN)/python benchmarks/speed.py --dataset $(DATASET) --threads 1

bench-scaling: $(STAMP)
	$(BIN)/python benchmarks/speed.py --scaling --threads 1

constraints: $(STAMP)
	{ echo "# Tested pins: pip install -c constraints.txt -e '.[dev]' (regenerate with: make constraints)"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^graphrec'; } > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
