# segkit: `make demo` and `make test` each create/reuse .venv, install what they need and run.
# On a GPU machine choose the torch build, e.g.  make demo TORCH="torch==2.13.0 --index-url <CUDA wheel index>"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.segkit-installed
DEMO_DATA := data/demo
DEMO_RUN := runs/demo
COMPARE_DEMO := runs/compare-demo

.PHONY: install demo compare-demo test lint clean robustness bench bench-gpu

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@test -f $(DEMO_DATA)/dataset.json || $(BIN)/segkit data synth --out $(DEMO_DATA) --cases 24 --seed 0 --overwrite
	$(BIN)/segkit train --config demo_unet_resnet34.yaml --overwrite
	$(BIN)/segkit predict --checkpoint $(DEMO_RUN) --input $(DEMO_DATA)/imagesTs --output $(DEMO_RUN)/predictions --overwrite
	$(BIN)/segkit evaluate --pred $(DEMO_RUN)/predictions --ref $(DEMO_DATA)/labelsTs

compare-demo: install
	@test -f $(DEMO_DATA)/dataset.json || $(BIN)/segkit data synth --out $(DEMO_DATA) --cases 24 --seed 0 --overwrite
	$(BIN)/segkit compare --config compare/upsampling_demo.yaml --out $(COMPARE_DEMO)

test: install
	$(BIN)/python -m pytest -q

# SIGKILL fault injection: 24 kills of segkit train (each resumed) and 12 of segkit predict (each rerun)
robustness: install
	$(BIN)/python -m tests.robustness.kill --train-points 24 --predict-points 12

# Benchmarks side by side with MONAI (docs/BENCHMARKS.md). bench: the CPU set here (~18 min);
# bench-gpu: the CUDA tests and the GPU sizes, on a machine with a CUDA GPU (results and logs in BENCH_OUT). It builds
# no .venv: a lent GPU machine has torch but no network, and benchmarks/gpu_session.sh installs segkit and the wheels
# carried in .whl/ for GPU_PYTHON (.venv's python if there is one, else python3). Stages in order of need; those that
# do not fit in BENCH_BUDGET_S seconds (one 10-minute command of a lent machine; 0: no limit) are skipped and named.
# ARCHIVE=path.tar.gz (outside BENCH_OUT) keeps one archive of the results, rewritten after every stage.
BENCH_OUT ?= bench-out
BENCH_BUDGET_S ?= 540
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
GPU_STAGES ?= tests inflate predict train-ro predict-bn stages forward train
bench: install
	$(BIN)/pip install --disable-pip-version-check -q -e ".[bench]"
	@mkdir -p bench-out
	$(BIN)/python benchmarks/io.py --repeats 3 --json bench-out/io.json
	$(BIN)/python benchmarks/train_step.py --json bench-out/train_step.json
	$(BIN)/python benchmarks/predict_e2e.py --cases 2 --repeats 2 --json bench-out/predict_e2e.json
	$(BIN)/python benchmarks/time_to_dice.py --cap 2 --json bench-out/time_to_dice.json

bench-gpu:
	OUT=$(BENCH_OUT) BUDGET_S=$(BENCH_BUDGET_S) PYTHON=$(GPU_PYTHON) bash benchmarks/gpu_session.sh $(GPU_STAGES)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_RUN) $(DEMO_DATA)/imagesTr $(DEMO_DATA)/labelsTr $(DEMO_DATA)/imagesTs $(DEMO_DATA)/labelsTs $(DEMO_DATA)/dataset.json \
		$(DEMO_DATA)/segkit_synth.json $(DEMO_DATA)/segkit_fingerprint.json
