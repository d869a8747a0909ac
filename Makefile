# invoiceguard — the two commands a newcomer runs are `make demo` and `make test`.

CARGO ?= cargo
SHELL := /bin/bash

.PHONY: help demo test check deps build fmt clean bench

help:
	@echo "make demo   run the gateway on embedded defaults with the real IdP and the example API"
	@echo "make test   the whole test suite (installs Node.js, openssl and the IdP when missing)"
	@echo "make check  cargo fmt --check and cargo clippy -D warnings"
	@echo "make bench  criterion benches of the hot path, the audit share, and the side-by-side"
	@echo "            comparison with nginx and Apache mod_auth_openidc (target/bench/)"

deps:
	@bash tests/deps.sh

build:
	$(CARGO) build --locked -p invoiceguard-cli -p invoicing-api

demo: deps build
	@bash examples/demo/run.sh

# Every test target of the workspace, then one closing line that sums cargo's "test result" lines.
test: deps
	@set -o pipefail; mkdir -p target; status=0; \
	$(CARGO) test --locked --workspace --all-targets 2>&1 | tee target/test.log || status=$$?; \
	awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "%d passed, %d failed\n", passed, failed }' target/test.log; \
	exit $$status

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked -p invoiceguard-gateway --features bench --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .demo tests/idp/node_modules

# Criterion benches of the hot path, the audit share, and the side-by-side comparison (needs the
# test IdP, nginx and Apache mod_auth_openidc: installs them when missing). Results in
# target/criterion and target/bench; the method in docs/performance.md.
bench: deps
	@bash tests/bench-deps.sh
	$(CARGO) build --locked --release -p invoiceguard-cli -p invoicing-api
	$(CARGO) build --locked --release -p invoiceguard-gateway --features bench --example proxy_only
	$(CARGO) bench --locked --workspace
	$(CARGO) bench --locked -p invoiceguard-gateway --features bench --bench normalize
