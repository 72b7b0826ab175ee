# syntax=docker/dockerfile:1
# Two images from one build: the operator (target "manager") and the receiver it runs for each
# SegmentWebhook (target "receiver"). Both are static, CGO-free binaries on distroless, run as the
# distroless nonroot user (65532), so they meet the restricted Pod Security Standard.
#
#   docker build --target manager  -t ghcr.io/segment-webhook-operator/segment-webhook-operator:v0.1.0 .
#   docker build --target receiver -t ghcr.io/segment-webhook-operator/segment-webhook-operator-receiver:v0.1.0 .
# (make docker-build does both, with --build-arg VERSION and REVISION for --version.)
# test/manifests checks this file statically.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
# What --version prints (make docker-build passes them; unset, the binaries say devel and unknown).
ARG VERSION
ARG REVISION
WORKDIR /workspace
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Modules first, so source edits reuse the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# The packages the two binaries are built from (test/manifests checks this list covers them).
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/version/ internal/version/
COPY receiver/ receiver/
# The same command as 'make build'.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    LDFLAGS="-X github.com/segment-webhook-operator/segment-webhook-operator/internal/version.Version=${VERSION} -X github.com/segment-webhook-operator/segment-webhook-operator/internal/version.Commit=${REVISION}" && \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -ldflags "$LDFLAGS" -o bin/manager ./cmd/manager && \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -ldflags "$LDFLAGS" -o bin/receiver ./cmd/receiver

FROM gcr.io/distroless/static:nonroot AS receiver
LABEL org.opencontainers.image.title="segment-webhook-receiver" \
      org.opencontainers.image.source="https://github.com/segment-webhook-operator/segment-webhook-operator"
WORKDIR /
COPY --from=build /workspace/bin/receiver /receiver
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/receiver"]

# Last, so a plain 'docker build .' produces the operator image.
FROM gcr.io/distroless/static:nonroot AS manager
LABEL org.opencontainers.image.title="segment-webhook-operator" \
      org.opencontainers.image.source="https://github.com/segment-webhook-operator/segment-webhook-operator"
WORKDIR /
COPY --from=build /workspace/bin/manager /manager
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/manager"]
