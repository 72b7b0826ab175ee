# Image URL to use all building/pushing image targets
VERSION ?= 0.1.0
IMG_REPO ?= ghcr.io/segment-webhook-operator/segment-webhook-operator
IMG ?= $(IMG_REPO):v$(VERSION)
RECEIVER_IMG ?= $(IMG_REPO)-receiver:v$(VERSION)

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

.PHONY: verify-generated
verify-generated: controller-gen ## Fail when 'make manifests generate' would change a file.
	hack/verify-generated.sh

.PHONY: test
test: verify-generated fmt-check vet envtest helm kustomize ## Run all tests against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" go test ./... -coverprofile cover.out

.PHONY: fmt-check
fmt-check: ## Fail when gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

##@ Demo

.PHONY: demo
demo: envtest ## Run the product on this machine: control plane, operator, sample, receiver, signed events.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" hack/demo.sh

##@ Benchmarks

.PHONY: bench-receiver
bench-receiver: ## Load the real receiver binary against a naive forwarder, a reverse proxy and bare net/http; batches over HTTP, Kafka, NATS.
	hack/bench-receiver.sh

.PHONY: bench-operator
bench-operator: envtest ## Create N SegmentWebhooks on envtest (N=100, or N=1000) and measure readiness, no-op writes, memory.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" hack/bench-operator.sh

.PHONY: test-fault-long
test-fault-long: ## Run the receiver fault and bad-input matrices with more events, printing their tables.
	FAULT_LONG=1 go test ./test/fault/ -count=1 -v -timeout 20m -run 'TestFaultMatrix|TestBadInput'

##@ Build

.PHONY: build
build: ## Build the manager and receiver binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -o bin/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -o bin/receiver ./cmd/receiver

.PHONY: run
run: manifests generate ## Run the manager against the cluster in the current kube context.
	RECEIVER_IMAGE=$(RECEIVER_IMG) go run ./cmd/manager

.PHONY: docker-build
docker-build: ## Build the manager and receiver images (needs a Docker engine).
	docker build --target manager -t $(IMG) .
	docker build --target receiver -t $(RECEIVER_IMG) .

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster in the current kube context.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Uninstall the CRDs.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator into the cluster in the current kube context.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator from the cluster.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found=$(ignore-not-found) -f -

##@ Dependencies

LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p $(LOCALBIN)

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
HELM ?= $(LOCALBIN)/helm

CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.1
HELM_VERSION ?= v3.22.0

.PHONY: controller-gen
controller-gen: $(LOCALBIN) ## Install controller-gen into bin/.
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: kustomize
kustomize: $(LOCALBIN) ## Install kustomize into bin/.
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: helm
helm: $(LOCALBIN) ## Install helm into bin/.
	$(call go-install-tool,$(HELM),helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

# envtest binaries are built from the Go module proxy (no other download site is reachable) and
# cached; an existing KUBEBUILDER_ASSETS wins.
.PHONY: envtest
envtest: ## Build or reuse the envtest kube-apiserver and etcd.
	$(eval ENVTEST_ASSETS := $(or $(KUBEBUILDER_ASSETS),$(shell KUBE_VERSION=$(ENVTEST_K8S_VERSION) ETCD_VERSION=$(ENVTEST_ETCD_VERSION) hack/envtest-assets.sh)))
	@test -x "$(ENVTEST_ASSETS)/kube-apiserver" || { echo "no envtest assets"; exit 1; }
	@echo "envtest assets: $(ENVTEST_ASSETS)"

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
