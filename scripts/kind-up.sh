#!/usr/bin/env bash
# make kind-up: create a kind cluster (one control plane, three workers), build the
# leader-sidecar image, load it into the nodes, install the chart, and run `helm test`.
# Re-running it rebuilds the image and upgrades the release in place.
#
# TARGET=local runs the same flow without Docker, on the cluster that $KUBECONFIG names
# (`make cluster-up NODE=real`: a local control plane with one real node). The images are
# built with buildah and imported into the node's containerd with a tag per build
# (`python -m sidecar.lab.cluster load`) instead of `kind create cluster`, `docker build`
# and `kind load`; every later step is the same.
#
# Settings (environment): TARGET (kind), KIND_CLUSTER_NAME (leader-sidecar), RELEASE (demo),
# NAMESPACE (leader-election), IMAGE_REPO (leader-sidecar), KIND_NODE_IMAGE (the node image
# pinned in kind-config.yaml), HELM_TIMEOUT (10m), PYTHON (python3, for TARGET=local).
# Arguments go to `helm upgrade`, e.g.
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
TARGET=${TARGET:-kind}
case $TARGET in
    kind) need docker kind helm kubectl ;;
    local) need helm kubectl ;;
    *) echo "kind-up: TARGET is kind or local, not '$TARGET'" >&2; exit 2 ;;
esac

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${KIND_CLUSTER_NAME:-leader-sidecar}
RELEASE=${RELEASE:-demo}
NAMESPACE=${NAMESPACE:-leader-election}
IMAGE_REPO=${IMAGE_REPO:-leader-sidecar}

step() { printf '\n==> %s\n' "$*"; }

# kind's steps: the cluster, the image, its load into the nodes. They leave the helm and
# kubectl options for the chosen cluster in HELM_CTX and KUBECTL_CTX, and the image's
# chart values in SETS.
kind_cluster_and_image() {
    local context=kind-$CLUSTER image_id tag
    HELM_CTX=(--kube-context "$context")
    KUBECTL_CTX=(--context "$context")
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
    tag=dev-${image_id:0:12}
    docker tag "$IMAGE_REPO:build" "$IMAGE_REPO:$tag"

    step "loading $IMAGE_REPO:$tag into the nodes"
    kind load docker-image "$IMAGE_REPO:$tag" --name "$CLUSTER"
    SETS=(--set image.repository="$IMAGE_REPO" --set image.tag="$tag" --set image.pullPolicy=Never)
}

# The local cluster's steps: its images, built here and imported into its node.
local_images() {
    local values value
    HELM_CTX=()  # the current context of $KUBECONFIG
    KUBECTL_CTX=()
    if [[ -z ${KUBECONFIG:-} ]]; then
        echo "kind-up: TARGET=local needs KUBECONFIG (make cluster-up NODE=real prints it)" >&2
        exit 2
    fi
    step "building the images and loading them into the local node"
    values=$(cd "$ROOT" && "${PYTHON:-python3}" -m sidecar.lab.cluster load --kubeconfig "$KUBECONFIG")
    SETS=()
    while IFS= read -r value; do
        SETS+=(--set "$value")
        echo "    $value"
    done <<<"$values"
}

if [[ $TARGET == local ]]; then local_images; else kind_cluster_and_image; fi

step "installing the chart (release $RELEASE, namespace $NAMESPACE)"
helm upgrade --install "$RELEASE" "$ROOT/charts/leader-election" \
    "${HELM_CTX[@]}" --namespace "$NAMESPACE" --create-namespace "${SETS[@]}" \
    --wait --timeout "${HELM_TIMEOUT:-10m}" "$@"

step "helm test"
helm test "$RELEASE" "${HELM_CTX[@]}" --namespace "$NAMESPACE" --logs

step "pods and their roles"
kubectl "${KUBECTL_CTX[@]}" --namespace "$NAMESPACE" get pods \
    -l "app.kubernetes.io/instance=$RELEASE" -L "${ROLE_LABEL:-role}"

if [[ $TARGET == local ]]; then
    then_what=("make kind-failover TARGET=local" "make cluster-down")
else
    then_what=("make kind-failover" "make kind-down")
fi
cat <<MSG

Ready. The leader carries the label role=leader:
  kubectl ${KUBECTL_CTX[*]:+${KUBECTL_CTX[*]} }-n $NAMESPACE get pods -L role
Measure failovers:  ${then_what[0]}
Remove it:          ${then_what[1]}
MSG
