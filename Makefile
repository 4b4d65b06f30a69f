# MOM — developer entry points. The two that matter first:
#   make demo   a local control plane with kwok nodes, MOM running, the examples applied
#   make test   unit tests + integration tests against a real local control plane
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CLUSTER_DIR ?= $(CURDIR)/.cluster
CARGO ?= cargo

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: components
components: ## Build (once per version) the control-plane binaries from their Go modules
	@tests/cluster/build.sh

.PHONY: build
build: ## Build the mom binary (debug)
	$(CARGO) build --bin mom

.PHONY: demo
demo: build components ## Start a local cluster, run MOM on it, apply the examples, show what happened
	@hack/demo.sh "$(CLUSTER_DIR)"

.PHONY: down
down: ## Stop the cluster started by `make demo`
	@tests/cluster/down.sh "$(CLUSTER_DIR)"

.PHONY: test
test: test-unit test-integration ## Unit tests, then integration tests on a real control plane

.PHONY: test-unit
test-unit: ## Unit and property tests of the core and operator (no cluster needed)
	$(CARGO) test --lib --bins
	$(CARGO) test --no-default-features --lib

.PHONY: test-integration
test-integration: components ## Integration tests against a fresh local control plane
	$(CARGO) test --test '*' --no-run
	tests/cluster/with-cluster.sh $(CARGO) test --test '*' -- --test-threads=4

.PHONY: lint
lint: ## rustfmt, clippy (both feature sets), the core-purity check, no import cycles in src/, CRD and dashboard staleness
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --no-default-features --lib --bins -- -D warnings
	$(CARGO) check --no-default-features
	python3 hack/import-cycles.py
	python3 hack/gen-dashboard.py --check
	$(MAKE) check-crds
	@$(HELM) lint --strict charts/mom

.PHONY: crds
crds: ## Regenerate crds/ from the Rust types
	$(CARGO) run --quiet --bin mom -- crdgen --out-dir crds

.PHONY: check-crds
check-crds: crds chart-crds manifests ## Fail when crds/, the chart's copies or manifests/install.yaml are stale
	@git diff --exit-code -- crds/ charts/mom/crds/ charts/mom/files/ manifests/install.yaml || { echo "generated files are stale: run 'make crds chart-crds manifests' and commit" >&2; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard crds/ charts/mom/crds/ charts/mom/files/)" || { echo "crds/ or the chart has uncommitted new files: run 'make crds chart-crds' and commit" >&2; exit 1; }

# helm v3.22.0 from the same pinned build as the control plane (override with HELM=helm).
HELM ?= $$(tests/cluster/build.sh)/helm

.PHONY: chart-crds
chart-crds: ## Sync the chart's copies: crds/ -> charts/mom/crds/, the scheduler config -> charts/mom/files/
	@rm -f charts/mom/crds/*.yaml
	cp crds/*.yaml charts/mom/crds/
	cp manifests/scheduler/mom-scheduler-config.yaml charts/mom/files/

.PHONY: manifests
manifests: chart-crds ## Render manifests/install.yaml (namespace mom-system) from the chart
	@hack/render-install.sh "$(HELM)" > manifests/install.yaml

.PHONY: ci
ci: lint test ## What .ci/run runs

# Benchmarks: slow (each starts its own control plane), not part of `make test` or CI.
MOM_RELEASE_BIN = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/mom
NODES ?= 500
PODS ?= 1000
AGENTS ?= 1000

# Everything but the JSON line goes to stderr, so `make bench-… > out.json` works.
.PHONY: build-release
build-release:
	@$(CARGO) build --release --bin mom >&2

.PHONY: image
image: ## Operator image without a container engine: static musl build packed as an OCI/docker archive in dist/ (IMAGE=repo:tag)
	hack/image.sh

.PHONY: krew
krew: ## kubectl mom for krew: the static musl mom packed as kubectl-mom in dist/, and dist/krew/mom.yaml with its URL and sha256 (MOM_BIN=… packs a given binary)
	hack/krew-package.sh

.PHONY: bench-anomaly
bench-anomaly: ## Anomaly detector: points/s on one core and bytes per series (no cluster; JSON)
	@$(CARGO) build --release --no-default-features --bin mom >&2
	@$(MOM_RELEASE_BIN) anomaly bench --points 5000000

.PHONY: bench-placement
bench-placement: build-release ## Traffic-weighted pod latency, MOM vs default scheduler, on a TopoHub topology (one JSON line)
	@MOM_BIN="$(MOM_RELEASE_BIN)" hack/bench-placement.sh

# 13 European and North American networks joined (844 sites), 6 nodes per site: 5,064 nodes.
PLACEMENT_5K_GRAPHS := Geant2012,TataNld,VtlWavenet2011,Ulaknet,Latnet,Uninett2011,Forthnet,HiberniaGlobal,Dfn,Iris,Surfnet,Bellsouth,Bellcanada

.PHONY: bench-placement-5k
bench-placement-5k: build-release ## bench-placement on 5,064 nodes: 13 TopoHub networks joined, 2 regions each, 10 copies of the application (one JSON line)
	@MOM_BIN="$(MOM_RELEASE_BIN)" BENCH_GRAPH=$(PLACEMENT_5K_GRAPHS) BENCH_NODES_PER_SITE=6 BENCH_REGIONS=2 BENCH_APPS=$(or $(APPS),10) hack/bench-placement.sh

.PHONY: bench-receipts
bench-receipts: build-release ## Receipt writes/s and p50/p99 on the apiserver; full_audit vs none overhead on a scaling workload (two JSON lines)
	@$(CARGO) build --release --example receipts_bench >&2
	@MOM_BIN="$(MOM_RELEASE_BIN)" RECEIPTS_BENCH_BIN="$(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/examples/receipts_bench" COUNT=$(or $(COUNT),500) hack/bench-receipts.sh

.PHONY: bench-throughput
bench-throughput: build-release ## Scheduling pods/s with vs without the extender, extender p50/p99 (NODES=500 PODS=1000; one JSON line)
	@MOM_BIN="$(MOM_RELEASE_BIN)" NODES=$(NODES) PODS=$(PODS) hack/bench-throughput.sh

.PHONY: bench-core
bench-core: ## Core placement at scale, no cluster: one decision over CORE_NODES nodes and one tick of targets for CORE_AGENTS agents (CORE_AGENTS=100000 CORE_NODES=5000 DIMENSION=64; one JSON line)
	@$(CARGO) build --release --no-default-features --example core_scale >&2
	@$(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/examples/core_scale $(or $(CORE_AGENTS),100000) $(or $(CORE_NODES),5000) $(or $(DIMENSION),64)

.PHONY: bench-ownership
bench-ownership: ## Mesh ownership by position in the ball vs a consistent-hash ring: agents moved per replica join/leave and load, no cluster (OWN_AGENTS=10000 MAX_REPLICAS=8 ANCHORS=16 TOPOLOGY=TataNld EPSILON=0.25; one JSON line)
	@$(CARGO) build --release --no-default-features --example mesh_ownership >&2
	@$(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/examples/mesh_ownership $(or $(OWN_AGENTS),10000) $(or $(MAX_REPLICAS),8) $(or $(ANCHORS),16) $(or $(TOPOLOGY),TataNld) 1 $(or $(EPSILON),0.25)

.PHONY: bench-deschedule
bench-deschedule: build-release ## Descheduler on a drifted kwok cluster (120 nodes, 200 pods): latency before/after, evictions, repeats; plan time at 10,000 pods / 1,000 nodes (one JSON line)
	@MOM_BIN="$(MOM_RELEASE_BIN)" hack/bench-deschedule.sh

.PHONY: bench-failover
bench-failover: build-release ## Demo shop: zone and region outage recovery time under MOM vs stock Deployments (about 10 min; one JSON line)
	@MOM_BIN="$(MOM_RELEASE_BIN)" hack/bench-failover.sh

.PHONY: bench-scale
bench-scale: build-release ## AGENTS ring agents applied at once on NODES kwok nodes (e.g. AGENTS=1000 NODES=60): peak RSS, bytes/agent, time to all bound, reconcile p99, receipts/s, verify (one JSON line)
	@MOM_BIN="$(MOM_RELEASE_BIN)" AGENTS=$(AGENTS) NODES=$(NODES) hack/bench-scale.sh
