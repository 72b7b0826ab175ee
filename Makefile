# Image URL to use all building/pushing image targets
VERSION ?= 0.1.0
IMG_REPO ?= ghcr.io/segment-webhook-operator/segment-webhook-operator
IMG ?= $(IMG_REPO):v$(VERSION)
RECEIVER_IMG ?= $(IMG_REPO)-receiver:v$(VERSION)
# The test cluster's pod sandbox image (make images builds it with the two above).
PAUSE_IMG ?= localhost/segment-webhook-operator/pause:v1
# make images writes the OCI archives here; make images-push pushes them to REGISTRY.
IMAGES_DIR ?= bin/images
REGISTRY ?=

# Kubernetes version of the envtest control plane; it matches the client-go minor in go.mod.
ENVTEST_K8S_VERSION ?= 1.37.2
ENVTEST_ETCD_VERSION ?= 3.6.16

# Setting SHELL to bash allows bash commands to be executed by recipes.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

GOBIN ?= $(shell go env GOPATH)/bin

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases
	@hack/sync-chart.sh

.PHONY: sync-chart
sync-chart: ## Copy the generated CRDs and manager ClusterRole rules into the Helm chart.
	hack/sync-chart.sh

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml), the e2e-tagged suite included.
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply the fixes it can make.
	$(GOLANGCI_LINT) run --fix ./...

.PHONY: verify-generated
verify-generated: controller-gen ## Fail when 'make manifests generate' would change a file.
	hack/verify-generated.sh

.PHONY: test
test: test-deps verify-generated fmt-check vet ## Run all tests against a real kube-apiserver and etcd.
	assets="$(ENVTEST_ASSETS)" && KUBEBUILDER_ASSETS="$$assets" HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" go test ./... -timeout 20m -coverprofile cover.out

# A cold envtest source build takes many minutes: the Go tools install meanwhile. The sub-make runs
# them in parallel however make itself was started.
.PHONY: test-deps
test-deps:
	@$(MAKE) --no-print-directory -j4 envtest controller-gen helm kustomize

.PHONY: fmt-check
fmt-check: ## Fail when gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

##@ Demo

.PHONY: demo
demo: ## Run the product on this machine: control plane, operator, sample, receiver, signed events.
	@$(MAKE) --no-print-directory -j2 envtest demo-build
	assets="$(ENVTEST_ASSETS)" && KUBEBUILDER_ASSETS="$$assets" hack/demo.sh

# The demo's binaries compile while the envtest assets are fetched or built, with the flags
# hack/demo.sh and the demo use, so their builds then come from the Go build cache.
.PHONY: demo-build
demo-build: $(LOCALBIN)
	@echo "compiling the demo, the receiver and kubectl-swh (the first time: minutes on two cores)"
	@go build -o $(LOCALBIN)/demo ./hack/demo
	@CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/ ./cmd/receiver ./cmd/kubectl-swh

##@ Fuzzing

# Each target runs FUZZTIME in turn, one worker (FUZZPARALLEL) so the machine stays usable. New
# failing inputs land in the package's testdata/fuzz/<Target>/ and fail `go test` until fixed.
# Each new interesting input is minimized for at most FUZZMINIMIZETIME (Go's default, 60s, would
# take most of a short run).
FUZZTIME ?= 1m
FUZZPARALLEL ?= 1
FUZZMINIMIZETIME ?= 5s
FUZZ_TARGETS = ./receiver:FuzzWebhook ./receiver:FuzzDecodeEvents ./receiver:FuzzVerifySignature \
	./receiver:FuzzDropField ./receiver:FuzzMalformedLetter ./receiver/trackingplan:FuzzCompile

.PHONY: fuzz
fuzz: ## Fuzz the receiver's body path and the tracking-plan compiler, FUZZTIME (1m) per target.
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz: $$name ($$pkg) for $(FUZZTIME)"; \
		go test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) -parallel $(FUZZPARALLEL) || exit 1; \
	done

##@ Benchmarks

.PHONY: bench-receiver
bench-receiver: ## Load the real receiver binary against a naive forwarder, a reverse proxy and bare net/http; batches over HTTP, Kafka, NATS.
	hack/bench-receiver.sh

.PHONY: bench-operator
bench-operator: envtest ## Create N SegmentWebhooks on envtest (N=100, or N=1000) and measure readiness, no-op writes, memory.
	assets="$(ENVTEST_ASSETS)" && KUBEBUILDER_ASSETS="$$assets" hack/bench-operator.sh

.PHONY: test-fault-long
test-fault-long: ## Run the receiver fault and bad-input matrices with more events, printing their tables.
	FAULT_LONG=1 go test ./test/fault/ -count=1 -v -timeout 20m -run 'TestFaultMatrix|TestBadInput'

##@ Build

# Every binary's --version: VERSION and the commit (-dirty with tracked changes, as make images
# says), stamped into internal/version; no build date, so a commit builds the same binaries.
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell [ -z "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || echo -dirty)
VERSION_PKG = github.com/segment-webhook-operator/segment-webhook-operator/internal/version
LDFLAGS ?= -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Commit=$(GIT_COMMIT)

.PHONY: build
build: ## Build the manager, receiver and kubectl-swh binaries into bin/ (--version: VERSION and the commit).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/receiver ./cmd/receiver
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/kubectl-swh ./cmd/kubectl-swh

.PHONY: run
run: manifests generate ## Run the manager against the cluster in the current kube context.
	RECEIVER_IMAGE=$(RECEIVER_IMG) go run ./cmd/manager

.PHONY: docker-build
docker-build: ## Build the manager and receiver images (needs a Docker engine).
	docker build --target manager --build-arg VERSION=$(VERSION) --build-arg REVISION=$(GIT_COMMIT) -t $(IMG) .
	docker build --target receiver --build-arg VERSION=$(VERSION) --build-arg REVISION=$(GIT_COMMIT) -t $(RECEIVER_IMG) .

# IMAGE_ARCH limits the images to some architectures (amd64,arm64); make e2e builds only this machine's.
IMAGE_ARCH ?=
# Both images and pause, for linux/amd64 and linux/arm64, built with Go alone (hack/images): the
# creation time is the commit's (SOURCE_DATE_EPOCH overrides it), so a commit gives the same digests.
.PHONY: images
images: ## Build the manager, receiver and pause images (linux/amd64+arm64) as OCI archives in bin/images, without Docker.
	go run ./hack/images build -out $(IMAGES_DIR) -version $(VERSION) -manager $(IMG) -receiver $(RECEIVER_IMG) -pause $(PAUSE_IMG) -arch "$(IMAGE_ARCH)"

.PHONY: images-push
images-push: images ## Push the manager and receiver images (multi-arch) to REGISTRY=host[:port]/path.
	@[ -n "$(REGISTRY)" ] || { echo "images-push: set REGISTRY=host[:port]/path" >&2; exit 1; }
	go run ./hack/images push -registry $(REGISTRY) $(IMAGES_DIR)/manager.tar $(IMAGES_DIR)/receiver.tar

.PHONY: images-verify
images-verify: images ## Build the images a second time and fail unless the archives are byte-identical.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	go run ./hack/images build -out "$$tmp" -version $(VERSION) -manager $(IMG) -receiver $(RECEIVER_IMG) -pause $(PAUSE_IMG) >/dev/null && \
	for f in manager receiver pause; do cmp "$(IMAGES_DIR)/$$f.tar" "$$tmp/$$f.tar"; done && \
	echo "images-verify: a second build gave byte-identical archives"

##@ Real node

# A real one-node cluster from binaries (test/e2e/cluster): etcd and kube-apiserver from envtest,
# kube-controller-manager, kube-scheduler, kube-proxy, kubectl and the kubelet from
# hack/node-assets.sh, containerd, runc and the CNI plugins from Debian. Needs root and cgroups.
E2E_DIR ?= /tmp/swo-e2e
CLUSTER_DIR ?= /tmp/swo-cluster
KUBELET_VERSION ?= 1.34.4
NODE_ASSETS = $(or $(NODE_ASSETS_DIR),$$(KUBE_VERSION=$(ENVTEST_K8S_VERSION) KUBELET_VERSION=$(KUBELET_VERSION) hack/node-assets.sh))

.PHONY: node-assets
node-assets: ## Download or build the kubelet, kube-controller-manager, kube-scheduler, kube-proxy and kubectl.
	@assets="$(NODE_ASSETS)" && echo "node assets: $$assets"

.PHONY: node-packages
node-packages: ## Install containerd, runc, the CNI plugins and iptables from Debian when missing.
	@hack/node-packages.sh

.PHONY: e2e
e2e: ## Run the real-node suite: images imported into containerd, helm install, rollouts, kills, rotation, drain, outage.
	@hack/e2e.sh test

.PHONY: cluster
cluster: ## Start the real one-node cluster with the operator installed and leave it running.
	@hack/e2e.sh cluster

# print-VAR prints a variable; print-envtest-assets and print-node-assets the cached asset directories.
print-%:
	@echo $($*)

.PHONY: print-envtest-assets print-node-assets
print-envtest-assets:
	@echo "$(ENVTEST_ASSETS)" 2>/dev/null
print-node-assets:
	@echo "$(NODE_ASSETS)"

.PHONY: cluster-down
cluster-down: ## Remove the cluster make cluster started.
	go run ./hack/cluster -dir $(CLUSTER_DIR) down

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster in the current kube context.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Delete the CRDs, and with them every SegmentWebhook and receiver in the cluster.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator into the cluster in the current kube context.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG) ghcr.io/segment-webhook-operator/segment-webhook-operator-receiver=$(RECEIVER_IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator from the cluster; the CRD and every SegmentWebhook stay ('make uninstall' deletes them).
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found=$(ignore-not-found) -l 'app.kubernetes.io/component!=crd' -f -

##@ Dependencies

LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p $(LOCALBIN)

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
HELM ?= $(LOCALBIN)/helm
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint

CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.1
HELM_VERSION ?= v3.22.0
SETUP_ENVTEST_VERSION ?= v0.25.1
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: controller-gen
controller-gen: $(LOCALBIN) ## Install controller-gen into bin/.
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: kustomize
kustomize: $(LOCALBIN) ## Install kustomize into bin/.
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: helm
helm: $(LOCALBIN) ## Install helm into bin/.
	$(call go-install-tool,$(HELM),helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

.PHONY: golangci-lint
golangci-lint: $(LOCALBIN) ## Install golangci-lint into bin/.
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# envtest binaries: reused from setup-envtest's store, else downloaded with setup-envtest, else
# built from the Go module proxy (hack/envtest-assets.sh says which). ENVTEST_ASSETS is shell text
# for recipes, so it runs in a recipe's shell, not in make; an existing KUBEBUILDER_ASSETS wins.
ENVTEST_ASSETS = $(or $(KUBEBUILDER_ASSETS),$$(KUBE_VERSION=$(ENVTEST_K8S_VERSION) ETCD_VERSION=$(ENVTEST_ETCD_VERSION) SETUP_ENVTEST_VERSION=$(SETUP_ENVTEST_VERSION) LOCALBIN="$(LOCALBIN)" hack/envtest-assets.sh))

.PHONY: envtest
envtest: ## Reuse, download or build the envtest kube-apiserver and etcd.
	@assets="$(ENVTEST_ASSETS)" && test -x "$$assets/kube-apiserver" && echo "envtest assets: $$assets"

# go-install-tool installs a Go tool at a pinned version into bin/, named <tool>-<version> with a
# symlink, so a version bump reinstalls it.
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(notdir $(1))-$(3)" ] || { \
set -e; \
echo "installing $(2)@$(3)"; \
rm -f "$(1)"; \
GOBIN="$(LOCALBIN)" go install $(2)@$(3); \
mv "$(LOCALBIN)/$$(basename "$(1)")" "$(1)-$(3)"; \
ln -sf "$(notdir $(1))-$(3)" "$(1)"; \
}
endef
