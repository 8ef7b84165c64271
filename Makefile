# modelguard — build, test, lint and benchmark. `make test` is the one test command (README, CI).
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
STATICCHECK_VERSION := v0.8.2
LDFLAGS := -s -w -X main.version=$(VERSION)
PKGS := ./...

.PHONY: all build test demo envtest-assets lint fmt vet staticcheck bench fuzz generate clean

all: build

build: ## Build bin/modelguard and its kubectl plugin name bin/kubectl-modelguard.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/modelguard ./cmd/modelguard
	ln -sf modelguard $(BIN)/kubectl-modelguard

test: ## Run every test under the race detector: unit and property tests, then the integration tests against a real kube-apiserver and etcd.
	@assets=$$(hack/envtest-assets) || { echo "make test: hack/envtest-assets failed: no kube-apiserver/etcd to test against" >&2; exit 1; }; \
	echo "KUBEBUILDER_ASSETS=$$assets"; \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -count=1 -race $$($(GO) list ./... | grep -v /test/integration) && \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -count=1 -race -timeout 30m ./test/integration/...

demo: build ## Run modelguard on a local kube-apiserver and show it deciding on the seed scenarios.
	@assets=$$(hack/envtest-assets) || { echo "make demo: hack/envtest-assets failed" >&2; exit 1; }; \
	KUBEBUILDER_ASSETS="$$assets" $(GO) run ./hack/demo

envtest-assets: ## Build (once) kube-apiserver and etcd for the tests; prints their directory.
	@hack/envtest-assets

lint: fmt vet staticcheck ## gofmt, go vet and staticcheck.

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

$(BIN)/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(BIN)/staticcheck $@

staticcheck: $(BIN)/staticcheck-$(STATICCHECK_VERSION)
	$< $(PKGS)

generate: ## Re-render generated files (README's findings catalogue, manifests/base/webhooks.yaml).
	$(GO) generate ./policy/...
	$(GO) run ./hack/genmanifests

BENCH_RUNS ?= 5
BENCH_SOAK ?= 5m
bench: build ## The performance suite (README "Performance"): go benchmarks of the hot paths into bench.txt (compare runs with benchstat), then hack/bench: load, API-server overhead, scale curve and CLI, as one table (full report in bench.json).
	$(GO) test -run='^$$' -bench=. -benchmem -count=$(BENCH_RUNS) ./policy/ ./policy/decode/ ./webhook/ ./cmd/modelguard/ > bench.txt
	@echo "go benchmarks: bench.txt"
	$(GO) run ./hack/bench -runs $(BENCH_RUNS) -soak $(BENCH_SOAK) -json bench.json

FUZZTIME ?= 60s
fuzz: ## Run every fuzz target for FUZZTIME each (not part of `make test`).
	@for pkg in ./policy/decode ./policy/oracle ./policy ./webhook; do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN) bench.txt bench.json
