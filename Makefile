# invoiceguard — the two commands a newcomer runs are `make demo` and `make test`.

CARGO ?= cargo
SHELL := /bin/bash

.PHONY: help demo test check deps build fmt clean bench soak fuzz fuzz-smoke

help:
	@echo "make demo   run the gateway on embedded defaults with the real IdP and the example API"
	@echo "make test   the whole test suite (installs Node.js, openssl and the IdP when missing)"
	@echo "make check  cargo fmt --check, clippy -D warnings, cargo deny (licenses, bans,"
	@echo "            sources: deny.toml) and cargo machete (unused dependencies)"
	@echo "make bench  criterion benches of the hot path, the audit share, audit query over a"
	@echo "            generated trail (2 million events, ~2 GB in target/bench), and the side-by-side"
	@echo "            comparison with nginx and Apache mod_auth_openidc (target/bench/)"
	@echo "make soak   traffic while the IdP, Redis, the collector and the upstream fail in turn,"
	@echo "            reconciled against the audit trail (SOAK_SECONDS=120; target/soak/)"
	@echo "make fuzz   each fuzz target for FUZZ_SECONDS (300); make fuzz-smoke: 20 s each (CI)"

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
	@bash tests/check-deps.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked -p invoiceguard-gateway -p invoiceguard-authn --features invoiceguard-gateway/bench,invoiceguard-gateway/fuzzing,invoiceguard-authn/fuzzing --all-targets -- -D warnings
	$(CARGO) clippy --locked --manifest-path fuzz/Cargo.toml --target-dir target --all-targets -- -D warnings
	target/tools/bin/cargo-deny --log-level error check bans licenses sources
	target/tools/bin/cargo-machete

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
	$(CARGO) bench --locked -p invoiceguard-gateway --features bench --bench watermark

# The soak (crates/cli/tests/soak.rs): steady traffic from many identities while the IdP, Redis,
# the syslog collector and the upstream are stopped and restarted in turn; then every answer,
# audit event, delivery and the memory bound are checked. Summary in target/soak/summary.md.
SOAK_SECONDS ?= 120
soak: deps
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --locked -p invoiceguard-cli --test soak -- --ignored --nocapture

# The fuzz targets of fuzz/ (cargo fuzz on the nightly toolchain; installs cargo-fuzz into
# target/tools when missing). Findings are written to fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := token normalize head_guard routes cedar_request
fuzz:
	@bash tests/fuzz-deps.sh
	@set -e; cd fuzz; for target in $(FUZZ_TARGETS); do \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		PATH="$(CURDIR)/target/tools/bin:$$PATH" cargo +nightly fuzz run $$target -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20
