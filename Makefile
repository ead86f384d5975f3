# Entry points. `make demo` runs the local stack; `make test` runs every test.
# Each test target has a script of its own under scripts/ so it can be run alone.
SHELL := /bin/bash
.PHONY: demo test test-rust test-wasm test-www test-worker test-warehouse test-demo wasm bench bench-peers install

# Each target runs through scripts/phase, which prints `phase NAME: N s`.
install:
	scripts/phase install bash .ci/install

demo: install
	./scripts/demo

wasm:
	scripts/phase wasm ./scripts/build-wasm

# Every test, from a fresh machine: installs what is missing first. The wasm
# build comes first: it compiles the library for wasm32, which test-rust
# then need not check again.
test: install
	$(MAKE) wasm test-rust test-wasm test-www test-worker test-demo

test-rust:
	scripts/phase test-rust ./scripts/test-rust

test-wasm:
	scripts/phase test-wasm ./scripts/test-wasm

test-www:
	scripts/phase test-www ./scripts/test-www

test-worker:
	scripts/phase test-worker ./scripts/test-worker

test-warehouse:
	scripts/phase test-warehouse ./scripts/test-warehouse

# make demo started and stopped 20 times (Ctrl-C and SIGTERM): nothing left running.
test-demo:
	scripts/phase test-demo ./scripts/test-demo

bench:
	./benches/run

# Against pandas and DuckDB (pip install -r benches/requirements.txt first).
bench-peers:
	./benches/peers/run
