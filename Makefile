# Two entry points for a fresh machine: `make run` (install + the default sweep + studies + report) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
QE := $(VENV)/bin/quant-explorer
SHARED ?= ../shared
export QUANT_EXPLORER_DATA ?= $(abspath $(SHARED)/data/cifar10-subset)
export QUANT_EXPLORER_MLPERF_WEIGHTS ?= $(abspath $(SHARED)/models/mlperf-tiny-resnet8/pretrainedResnet.h5)

.PHONY: install run test bench classes qemu arm

install: $(VENV)/.installed qemu

# ONNX Runtime's and the eager engine's rows on avx2 and sse4 run under qemu-user as a CPU of that class (Debian's 7.2
# emulates them exactly; 10.0 adds nothing for x86). Installed where it is missing and apt-get can run as root; else
# one line says how, and those rows say "not measured: qemu-user is not installed".
qemu:
	@command -v qemu-x86_64 >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq qemu-user || (apt-get update -qq && apt-get install -y -qq qemu-user)) >/dev/null 2>&1 \
	      || echo "qemu-user could not be installed (apt-get install qemu-user): emulated ONNX Runtime and eager rows will say not measured"; \
	  else echo "qemu-user is not installed: run 'sudo apt-get install qemu-user' to score ONNX Runtime and eager configs as avx2 and sse4 CPUs"; fi; }

# ARM CPU classes (arm64, arm64-dotprod: `--isa`, and `make classes` once built): an arm64 Python with numpy,
# ONNX Runtime (Debian bookworm's arm64 packages and the aarch64 wheels of this venv's versions) and torch 2.9.1's
# aarch64 CPU build (the eager engine, as qnnpack), and qemu-aarch64 10 (bookworm-backports, unpacked, unless the
# system's is 10+) in .arm (git-ignored). Not part of install: about 230 MB downloaded, 810 MB on disk, 40 s with
# pip's cache warm. Without it, the ONNX Runtime and eager rows on those classes say "not measured".
arm: $(VENV)/.installed
	sh tools/aarch64_env.sh .arm $(PY)

# torch 2.14.1 / torchvision 0.29.1 wheels come from local disk with plain pip (not uv/poetry).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

SHIPPED := resnet8 resnet8-mlperf cifar_cnn
# The lower CPU classes this CPU can emulate (qemu-user: avx2, sse4; oneDNN's cap: the AVX-512 classes below AMX):
# `make classes` sweeps each, avx2 first, every config and seed (`make classes ISAS=avx2` for one). sse4 is left to
# `make classes ISAS=sse4`: qemu's Nehalem runs ONNX Runtime 2-4x slower than its Haswell (25-100 ms an image against
# 14-38), about 1.5 hours more on 2 cores. So are the ARM classes (once `make arm` built their environment):
# `make classes ISAS="arm64-dotprod arm64"` (ONNX Runtime, the eager engine and FP32; PT2E's x86 packages say why not).
EMULABLE = $(shell $(QE) cpu --emulable 2>/dev/null)
ARM_CLASSES := arm64-dotprod arm64
ISAS ?= $(filter avx2,$(EMULABLE)) $(filter-out avx2 sse4 $(ARM_CLASSES),$(EMULABLE))

# `quant-explorer run`, under one progress display: a first answer in minutes (one calibration draw per config, then
# pareto.md and the report), then every seed (the first reused), the report's studies, each shipped model's speed
# (the pick is the fastest of the confidence set for the best), the lower CPU classes this CPU can emulate, and the
# report again. Everything stored and current is reused: a rerun with nothing changed only checks.
run: install
	$(QE) run

# The default sweep on each lower CPU class, emulated (ONNX Runtime, the eager engine and FP32 under qemu as a CPU of
# the class, two emulated processes at once; PT2E by oneDNN's cap; what neither reaches says "not measured"), with
# progress and ETA, then the report with its CPU-class matrix.
classes: install
	@if echo " $(EMULABLE) " | grep -q " sse4 " && ! echo " $(ISAS) " | grep -q " sse4 "; then echo "left out: sse4 \
	(qemu Nehalem: ONNX Runtime 2-4x slower than as avx2, about 1.5 hours more on 2 cores): make classes ISAS=sse4"; fi
	@if echo " $(EMULABLE) " | grep -q " arm64 " && ! echo " $(ISAS) " | grep -q " arm64"; then echo "left out: \
	arm64-dotprod, arm64 (qemu-aarch64: ONNX Runtime, eager and FP32; about 1.5 and 4 hours on 2 cores): \
	make classes ISAS=\"arm64-dotprod arm64\""; fi
	for isa in $(ISAS); do $(QE) sweep --isa $$isa --executor processes || exit 1; done
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
