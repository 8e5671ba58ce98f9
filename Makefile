# Neural style transfer served by TorchServe. `make help` lists the targets.
# Everything runs from a fresh clone with Python 3.11 and Java 17; `make install` makes .venv.

PYTHON      ?= $(shell command -v python3.11 || command -v python3)
VENV        ?= .venv
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
# Where the VGG weights come from (handler/nst/weights.py): imagenet (torchvision's VGG19
# download), imagenet-vgg16, hed (a trained VGG16 from the package registry, offline-friendly),
# random (seeded, for plumbing tests; NETWORK=vgg16 for VGG16), or a path to a VGG16/VGG19 state
# dict such as vgg19-dcbb9e9d.pth (INPUT=torchvision|caffe for a file the project does not know).
WEIGHTS     ?= imagenet
NETWORK     ?=
INPUT       ?=
# `make demo` only: weights to use, saying so, when the ImageNet download fails.
DEMO_FALLBACK ?= hed
SEED        ?= 0
MODEL_STORE ?= model_store
STAGE       := $(MODEL_STORE)/.stage
# The demo: a real photograph in a real painting's style, through TorchServe and the SDK.
DEMO_CONTENT ?= examples/contents/tubingen.jpg
DEMO_STYLE   ?= examples/styles/starry_night.jpg
DEMO_OUT     ?= out.png
# content | style | output with the weights' label (the README's opening picture is one).
DEMO_COMPARE ?= out-compare.png
DEMO_ARGS    ?= --image-size 256 --iterations 150

export PYTHONPATH := $(CURDIR)/handler$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help install check-java weights archive serve stop demo test test-fast lint gallery bench gpu-deps gpu-check kserve-layout clean

help:
	@echo "make demo      build, serve and stylize $(DEMO_CONTENT) in the style of $(DEMO_STYLE) -> $(DEMO_OUT)"
	@echo "               (without download.pytorch.org it says so and uses WEIGHTS=hed)"
	@echo "make test      run every test (unit, handler, SDK, quality on HED weights, end to end with the real TorchServe)"
	@echo "make test-fast every test that starts no TorchServe (pytest -m 'not e2e'; no Java needed)"
	@echo "make lint      ruff on everything, mypy on everything (--strict on the SDK)"
	@echo "make install   create $(VENV) with the pinned requirements and the SDK"
	@echo "make weights   fetch/make VGG weights (WEIGHTS=imagenet|imagenet-vgg16|hed|random|/path/to/vgg.pth)"
	@echo "make archive   build $(MODEL_STORE)/nst.mar"
	@echo "make serve     start TorchServe on 127.0.0.1:8080/8081/8082 and wait until the model is READY"
	@echo "make stop      stop TorchServe"
	@echo "make gallery   render docs/gallery/*.png: one tile per stylization control (hed weights, minutes on CPU)"
	@echo "make bench     engine and server benchmarks -> benchmarks/RESULTS.md (BENCH_ARGS=--quick: smoke run)"
	@echo "make gpu-deps  gather what the GPU check needs beyond a bare PyTorch into $(GPU_DEPS)/ (run here)"
	@echo "make gpu-check on a GPU host (only make and python3): the GPU check -> $(GPU_CHECK_OUT)/gpu_check.json"
	@echo "make kserve-layout  $(KSERVE_LAYOUT)/{config,model-store}: what to upload to a KServe storageUri (deploy/README.md)"
	@echo "make clean     remove build outputs, logs and $(VENV)"

$(VENV)/.installed: requirements.txt requirements-dev.txt client_sdk/pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 is needed (python3.11 or python3 on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet -e 'client_sdk[progress,async,plot]'
	@# TorchServe's CLI reads no config.properties unless told: with the virtualenv active, a
	@# plain `torchserve --start` from the repository root then serves model_store/nst.mar.
	@grep -q TS_CONFIG_FILE $(VENV)/bin/activate || printf '\n# Added by make install: `torchserve --start` uses this project'"'"'s config.\nexport TS_CONFIG_FILE="%s/config.properties"\n' "$(CURDIR)" >> $(VENV)/bin/activate
	@touch $@

install: $(VENV)/.installed

# TorchServe's frontend is Java; without it `torchserve --start` still exits 0 and serves nothing.
check-java:
	@java -version >/dev/null 2>&1 || { \
	  echo "error: Java 17 is needed by TorchServe and 'java' is not on PATH."; \
	  echo "       Install it, e.g. 'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu)"; \
	  echo "       or 'brew install openjdk@17' (macOS)."; exit 1; }
	@java -version 2>&1 | head -n1 | grep -Eq '"(1[7-9]|[2-9][0-9])[".]' || { \
	  echo "error: TorchServe needs Java 17 or newer; found: $$(java -version 2>&1 | head -n1)."; \
	  echo "       Install openjdk-17-jre-headless (Debian/Ubuntu) or openjdk@17 (macOS)."; exit 1; }

weights: install
	$(PY) -m nst.weights --weights "$(WEIGHTS)" --seed $(SEED) --out-dir $(MODEL_STORE) \
	  $(if $(NETWORK),--network $(NETWORK)) $(if $(INPUT),--input $(INPUT)) $(if $(FALLBACK),--fallback $(FALLBACK))

# Strict by default: the archive serves the weights asked for, or is not built (FALLBACK is
# for `make demo`).
# Every package beside the handler (nst, nst_http, nst_jobs) goes into the archive.
HANDLER_PACKAGES := $(patsubst %/__init__.py,%,$(wildcard handler/*/__init__.py))

archive: weights
	rm -rf $(STAGE) && mkdir -p $(STAGE)
	cp -r $(HANDLER_PACKAGES) $(STAGE)/ && rm -rf $(STAGE)/*/__pycache__
	cp $(MODEL_STORE)/vgg_features.json $(STAGE)/ && cp docs/credits.md $(STAGE)/CREDITS.md
	$(BIN)/torch-model-archiver --model-name nst --version 1.0 --force \
	  --handler handler/nst_handler.py \
	  --serialized-file $(MODEL_STORE)/vgg_features.pth \
	  --extra-files $(STAGE) \
	  --config-file handler/model-config.yaml \
	  --export-path $(MODEL_STORE)
	rm -rf $(STAGE)
	@echo "built $(MODEL_STORE)/nst.mar ($$(cat $(MODEL_STORE)/vgg_features.json | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["label"])') weights)"

serve: check-java install
	@test -f $(MODEL_STORE)/nst.mar || { echo "error: $(MODEL_STORE)/nst.mar is missing; run 'make archive' first"; exit 1; }
	@mkdir -p logs
	@# The Java server inherits stdout; send it to a file so that `make serve | ...` returns.
	$(BIN)/torchserve --start --ts-config config.properties --model-store $(MODEL_STORE) --ncs >logs/torchserve.out 2>&1 \
	  || { cat logs/torchserve.out; exit 1; }
	$(PY) scripts/wait_ready.py --key-file key_file.json --timeout 180

stop:
	@if [ -x $(BIN)/torchserve ]; then $(BIN)/torchserve --stop; else echo "no $(VENV): nothing to stop"; fi

demo: check-java install
	$(MAKE) --no-print-directory archive FALLBACK=$(DEMO_FALLBACK)
	$(MAKE) --no-print-directory serve
	$(BIN)/nst-client stylize $(DEMO_CONTENT) $(DEMO_STYLE) -o $(DEMO_OUT) --compare $(DEMO_COMPARE) $(DEMO_ARGS); \
	  status=$$?; $(MAKE) --no-print-directory stop; \
	  test $$status -eq 0 && echo "wrote $(DEMO_OUT) and $(DEMO_COMPARE)"; exit $$status

# Two runs: the fast tier on every core, then the end-to-end tier in one process (its tests
# share session servers); together, every test.
test: check-java install
	$(PY) -m pytest tests -m "not e2e"
	$(PY) -m pytest tests -m e2e

# The fast tier: everything but the tests marked e2e (pytest.ini), which start the real TorchServe.
test-fast: install
	$(PY) -m pytest tests -m "not e2e"

# ruff over everything; mypy over the server side, benchmarks, scripts and tests (mypy.ini) and,
# with --strict, over the SDK (client_sdk/pyproject.toml). CI runs it before the tests.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	cd client_sdk && ../$(BIN)/mypy

# The README gallery: the engine run directly (no TorchServe) with HED's VGG16 weights.
gallery: install
	$(PY) scripts/gallery.py

# Issue 5's benchmarks: the engine (floor, peers, time to quality, memory) and the server
# (start-up, overhead, throughput); append to benchmarks/RESULTS.md. About an hour on a 2-core
# CPU, run on a quiet machine. `make bench BENCH_ARGS=--quick` is a minutes-long smoke run.
BENCH_ARGS ?=
bench: check-java install
	$(PY) benchmarks/bench_engine.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_server.py $(BENCH_ARGS)

# The GPU check (issue 23, benchmarks/gpu_check.py): a few minutes on a GPU host that has only
# its own PyTorch (no TorchServe, no Java, no network, no $(VENV)). `make gpu-deps` here copies
# TorchServe's Python package (without its 44 MB Java frontend) and `packaging` from $(VENV)
# into $(GPU_DEPS)/ (ignored by git, about 1 MB), which travels with the checkout; then on the
# GPU host `make gpu-check` (GPU_PYTHON: a Python with torch; results in $$OUT when set).
GPU_DEPS       := .gpu-deps
GPU_PYTHON     ?= python3
GPU_CHECK_OUT  ?= $(if $(OUT),$(OUT),gpu-check-out)
GPU_CHECK_ARGS ?=
gpu-deps: install
	rm -rf $(GPU_DEPS)
	$(PY) benchmarks/gpu_check.py --gather-deps $(GPU_DEPS)

gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# The layout KServe's TorchServe runtime reads from an InferenceService's storageUri
# (deploy/README.md): upload the folder's contents as they are. Build the archive first.
KSERVE_LAYOUT ?= build/kserve
kserve-layout:
	@test -f $(MODEL_STORE)/nst.mar || { echo "error: $(MODEL_STORE)/nst.mar is missing; run 'make archive' first"; exit 1; }
	rm -rf $(KSERVE_LAYOUT) && mkdir -p $(KSERVE_LAYOUT)/config $(KSERVE_LAYOUT)/model-store
	cp deploy/kserve/config.properties handler/metrics.yaml $(KSERVE_LAYOUT)/config/
	cp $(MODEL_STORE)/nst.mar $(KSERVE_LAYOUT)/model-store/
	@echo "built $(KSERVE_LAYOUT): upload its contents to the InferenceService's storageUri"

clean: stop
	rm -rf $(MODEL_STORE)/*.mar $(MODEL_STORE)/vgg_features.* $(MODEL_STORE)/vgg19_features.* $(STAGE) $(KSERVE_LAYOUT) logs out.png out-compare.png .pytest_cache $(VENV)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
