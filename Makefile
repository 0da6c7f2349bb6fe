# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv with the pinned dependencies when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.graphrec-installed

.PHONY: demo test lint tune bench-baselines bench-multi bench-full ablate-tmall ablate-retailrocket bench-speed bench-scaling constraints clean

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
	$(if $(filter retailrocket,$(DATASET)),$(BIN)/python benchmarks/tune.py --config benchmarks/configs/full.json --dataset $(DATASET) --models causal_cascade)

bench-baselines: $(STAMP)
	$(BIN)/python benchmarks/run.py --config benchmarks/configs/baselines.json --dataset $(DATASET) --seeds 0 1 2

bench-multi: $(STAMP)
	$(BIN)/python benchmarks/run.py --config benchmarks/configs/multi.json --dataset $(DATASET) --seeds 0 1 2

# The full model beside the other configs' rows (run bench-baselines and
# bench-multi first for the comparison and the significance tests; on
# retailrocket `make tune` also chooses the full model's learning rate on the
# baselines' grid, its tmall settings come from benchmarks/explore_full.py).
bench-full: $(STAMP)
	$(BIN)/python benchmarks/run.py --config benchmarks/configs/full.json --dataset $(DATASET) --seeds 0 1 2 --threads 1 --compare docs/results/baselines.jsonl docs/results/multi.jsonl

# Ablations of the full model, as on docs/results/ablation-causal_cascade-*.md.
ablate-tmall: $(STAMP)
	$(BIN)/graphrec ablate --config benchmarks/configs/full.json --model causal_cascade --dataset tmall --seeds 0 1 2 --epochs 10 --threads 1 --results docs/results/ablation.jsonl --ablations no_visited_head no_item_features no_cascade_heads mean_fusion no_backdoor no_contrastive no_cascade backbone_lightgcn backbone_mf with_caged --graph 'behaviors=view+buy' 'view@0.5'

ablate-retailrocket: $(STAMP)
	$(BIN)/graphrec ablate --config benchmarks/configs/full.json --model causal_cascade --dataset retailrocket --seeds 0 1 2 --threads 1 --results docs/results/ablation-retailrocket.jsonl --ablations with_visited_head no_cascade_heads mean_fusion no_backdoor no_contrastive no_cascade no_plugins backbone_lightgcn backbone_mf with_caged

bench-speed: $(STAMP)
	$(BIN)/python benchmarks/speed.py --dataset $(DATASET) --threads 2

bench-scaling: $(STAMP)
	$(BIN)/python benchmarks/speed.py --scaling --threads 1

constraints: $(STAMP)
	{ echo "# Tested pins: pip install -c constraints.txt -e '.[dev]' (regenerate with: make constraints)"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vi '^graphrec'; } > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
