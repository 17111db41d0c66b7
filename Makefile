# Echo: `make run` starts the local stack; `make test` installs what the tests need and runs them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Models the tests use: the smallest of each role, plus the default LLM for end-to-end turns.
TEST_MODELS := whisper-tiny.en smollm2-135m qwen2.5-coder-0.5b piper-joe smart-turn-v3.2

.DEFAULT_GOAL := help
.PHONY: help run test models protos lint format clean bench chromium espeak

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# `make run EXTRAS=aws` also installs extras of pyproject.toml (comma- or space-separated), e.g. the
# AWS backends' SDKs. The stamp's name lists them (.local-installed-aws), so other EXTRAS install again.
EXTRAS ?=
comma := ,
space := $(subst ,, )
RUN_EXTRAS := $(sort $(subst $(comma),$(space),$(EXTRAS)))
RUN_STAMP := $(VENV)/.local-installed$(subst $(space),,$(addprefix -,$(RUN_EXTRAS)))

# llama.cpp's build: on x86-64, AVX2/FMA/F16C code rather than -march=native. A native build on a CPU with
# AMX (e.g. Xeon Sapphire Rapids) puts quantized weights in llama.cpp's AMX buffers, and decoding then
# crashes (segfault in llama_decode, llama-cpp-python 0.3.36, seen on this project's machines).
# pip caches the wheel it builds and reuses it whatever CMAKE_ARGS says: after changing this, rebuild it
# with `CMAKE_ARGS=... .venv/bin/pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==...`.
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
endif
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)

# Reinstall when pyproject.toml changes. llama-cpp-python compiles from source the first time
# (about 6 minutes on 2 cores); pip caches the wheel it builds. The extras come from the stamp's name.
$(sort $(VENV)/.local-installed $(RUN_STAMP)): pyproject.toml | $(BIN)/python
	@echo "Installing Echo and its local backends (first run compiles llama.cpp: ~6 min)..."
	$(PIP) install -e '.[local$(subst -,$(comma),$(patsubst .local-installed%,%,$(notdir $@)))]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	@echo "Installing Echo with test dependencies (first run compiles llama.cpp: ~6 min)..."
	$(PIP) install -e '.[dev]'
	touch $@

run: $(RUN_STAMP) ## Set up everything and start the whole local stack (EXTRAS=aws: with the AWS SDKs)
	$(BIN)/echo-voice models pull
	$(BIN)/echo-voice run

# The web client test drives Debian's Chromium through Playwright (which downloads no browser). Checked
# at every `make test` (no stamp that could outlive a failed install): installed, or `make test` stops.
chromium: | $(BIN)/python ## Install Chromium (Debian package) for the web client test
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "Installing Chromium (Debian package) for the web client test..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } \
			|| { echo "ERROR: apt-get could not install Chromium; the web client test needs it." >&2; \
			     echo "Install it (apt-get install chromium), then run make test again." >&2; exit 1; }; \
		command -v chromium >/dev/null 2>&1 \
			|| { echo "ERROR: apt-get installed chromium but there is no chromium command." >&2; exit 1; }; \
	}

# Spoken test audio from other speakers than Piper's (tests/speech.py ESPEAK_VOICES; bench/latency.py's
# WER by voice): Debian's eSpeak NG, checked like Chromium.
espeak: ## Install eSpeak NG (Debian package) for the test voices
	@command -v espeak-ng >/dev/null 2>&1 || { \
		echo "Installing eSpeak NG (Debian package) for the test voices..."; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng; } \
			|| { echo "ERROR: apt-get could not install espeak-ng; the test voices need it." >&2; \
			     echo "Install it (apt-get install espeak-ng), then run make again." >&2; exit 1; }; \
		command -v espeak-ng >/dev/null 2>&1 \
			|| { echo "ERROR: apt-get installed espeak-ng but there is no espeak-ng command." >&2; exit 1; }; \
	}

# Fragments (deploy/*.mk) add prerequisites of `make test` here, e.g. their own tool installs.
TEST_PREREQS := chromium espeak
-include deploy/*.mk

test: $(VENV)/.dev-installed $(TEST_PREREQS) ## Install test dependencies, pull the small models, run lint and tests
	$(BIN)/echo-voice models pull $(TEST_MODELS)
	$(BIN)/ruff check .
	$(BIN)/mypy services gateway
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

models: $(VENV)/.local-installed ## Pull the default models into ~/.cache/echo/models
	$(BIN)/echo-voice models pull

protos: $(VENV)/.dev-installed ## Regenerate the Python stubs from protos/
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos \
		--grpc_python_out=protos protos/echo/v1/*.proto

lint: $(VENV)/.dev-installed ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services gateway

format: $(VENV)/.dev-installed ## ruff format + autofix
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.local-installed espeak ## Voice-to-voice latency benchmark (default models)
	$(BIN)/echo-voice models pull
	$(BIN)/python bench/latency.py

clean: ## Remove the virtual environment and caches (models stay in ~/.cache/echo)
	rm -rf $(VENV) .pytest_cache .ruff_cache
