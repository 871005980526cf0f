#!/usr/bin/env bash
# make kind-up: create a kind cluster (one control plane, three workers), build the
# leader-sidecar image, load it into the nodes, install the chart, and run `helm test`.
# Re-running it rebuilds the image and upgrades the release in place.
#
# Settings (environment): KIND_CLUSTER_NAME (leader-sidecar), RELEASE (demo),
# NAMESPACE (leader-election), IMAGE_REPO (leader-sidecar), KIND_NODE_IMAGE (the node image
# pinned in kind-config.yaml), HELM_TIMEOUT (10m). Arguments go to `helm upgrade`, e.g.
#   bash scripts/kind-up.sh --set zookeeper.persistence.enabled=false
set -euo pipefail

# Only shell builtins before the tool check, so that a bare PATH still gets the clear line.
need() {
    local tool
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "kind-up: '$tool' is required but not found on PATH; install it and retry" >&2
            exit 127
        fi
    done
}
need docker kind helm kubectl

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${KIND_CLUSTER_NAME:-leader-sidecar}
RELEASE=${RELEASE:-demo}
NAMESPACE=${NAMESPACE:-leader-election}
IMAGE_REPO=${IMAGE_REPO:-leader-sidecar}
CONTEXT=kind-$CLUSTER

step() { printf '\n==> %s\n' "$*"; }

if ! docker info >/dev/null 2>&1; then
    echo "kind-up: docker is installed but its engine does not answer; start Docker and retry" >&2
    exit 1
fi

if kind get clusters 2>/dev/null | grep -qx -- "$CLUSTER"; then
    step "kind cluster $CLUSTER exists, reusing it"
else
    step "creating kind cluster $CLUSTER (1 control plane, 3 workers)"
    kind create cluster --name "$CLUSTER" --config "$ROOT/kind-config.yaml" \
        ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 180s
fi

step "building the image"
DOCKER_BUILDKIT=1 docker build -t "$IMAGE_REPO:build" "$ROOT"  # RUN --mount needs BuildKit
# A tag per build (from the image id), so that `helm upgrade` rolls the pods onto it.
image_id=$(docker image inspect --format '{{.Id}}' "$IMAGE_REPO:build")
image_id=${image_id#sha256:}
TAG=dev-${image_id:0:12}
docker tag "$IMAGE_REPO:build" "$IMAGE_REPO:$TAG"

step "loading $IMAGE_REPO:$TAG into the nodes"
kind load docker-image "$IMAGE_REPO:$TAG" --name "$CLUSTER"

step "installing the chart (release $RELEASE, namespace $NAMESPACE)"
helm upgrade --install "$RELEASE" "$ROOT/charts/leader-election" \
    --kube-context "$CONTEXT" --namespace "$NAMESPACE" --create-namespace \
    --set image.repository="$IMAGE_REPO" --set image.tag="$TAG" --set image.pullPolicy=Never \
    --wait --timeout "${HELM_TIMEOUT:-10m}" "$@"

step "helm test"
helm test "$RELEASE" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --logs

step "pods and their roles"
kubectl --context "$CONTEXT" --namespace "$NAMESPACE" get pods \
    -l "app.kubernetes.io/instance=$RELEASE" -L "${ROLE_LABEL:-role}"

cat <<MSG

Ready. The leader carries the label role=leader:
  kubectl --context $CONTEXT -n $NAMESPACE get pods -L role
Measure failovers:  make kind-failover
Remove the cluster: make kind-down
MSG
