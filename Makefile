# The two commands that matter (see README.md):
#   make demo   build the plugins, start the local cluster unless DEMO_KUBECONFIG names one,
#               and run the guide end to end: deploy postgres, check, back up, prove persistence
#   make test   everything CI runs: lints, pure tests, integration tests on the local cluster
# and, for a release:
#   make release  the archives of linux and darwin on amd64 and arm64 (dist/) and the Krew
#                 manifests with their sha256s (krew/); ~50 CPU-minutes cold, cached after
.PHONY: build demo test lint cluster-up cluster-down bench release

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

release:
	bash scripts/release.sh
