# The two commands that matter (see README.md):
#   make demo   build the plugins, start the local cluster unless DEMO_KUBECONFIG names one,
#               and run the guide end to end: deploy postgres, check, back up, prove persistence
#   make test   everything CI runs: lints, pure tests, integration tests on the local cluster
.PHONY: build demo test lint cluster-up cluster-down bench

build:
	cargo build --release --locked

demo:
	bash tests/demo.sh

test:
	bash tests/run.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

cluster-up:
	bash tests/cluster/cluster.sh up

cluster-down:
	bash tests/cluster/cluster.sh down

bench:
	bash benches/startup.sh
