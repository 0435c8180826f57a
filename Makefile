# Two entry points for a fresh machine: `make run` (install + the default sweep + studies + report) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
QE := $(VENV)/bin/quant-explorer
SHARED ?= ../shared
export QUANT_EXPLORER_DATA ?= $(abspath $(SHARED)/data/cifar10-subset)
export QUANT_EXPLORER_MLPERF_WEIGHTS ?= $(abspath $(SHARED)/models/mlperf-tiny-resnet8/pretrainedResnet.h5)

.PHONY: install run test bench classes

install: $(VENV)/.installed

# torch 2.14.1 / torchvision 0.29.1 wheels come from local disk with plain pip (not uv/poetry).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

SHIPPED := resnet8 resnet8-mlperf cifar_cnn
# The lower CPU classes this CPU can emulate (oneDNN's dispatcher cap): `make classes` sweeps each.
ISAS ?= $(shell $(QE) cpu --emulable 2>/dev/null)

# `quant-explorer run`, under one progress display: a first answer in minutes (one calibration draw per config, then
# pareto.md and the report), then every seed (the first reused), the report's studies, each shipped model's speed
# (the pick is the fastest of the confidence set for the best), the lower CPU classes this CPU can emulate, and the
# report again. Everything stored and current is reused: a rerun with nothing changed only checks.
run: install
	$(QE) run

# The default sweep on each lower CPU class (emulated: PT2E and FP32 run there; ONNX Runtime's and the eager
# engine's kernels cannot be capped, so their rows say "not measured"), then the report with its CPU-class matrix.
classes: install
	for isa in $(ISAS); do $(QE) sweep --isa $$isa || exit 1; done
	$(QE) report

test: install
	$(VENV)/bin/ruff check src tests tools benchmarks
	$(PY) -m pytest -q

# Every shipped model's speed in each runtime it ships in (AOTInductor packages for PT2E; batch 1 at the fastest
# thread count), then the whole comparison on resnet8-mlperf: paired targets, dispatched kernel paths and fractions
# of peak (bench.json), and where one image's time goes in each runtime, the settings tried side by side and the
# batch-1 goals (batch1.py: the "batch1" section of bench_profile.json).
bench: install
	for m in $(SHIPPED); do $(QE) bench --model $$m --runs 100 || exit 1; done
	$(PY) benchmarks/bench_configs.py
	$(PY) benchmarks/batch1.py
