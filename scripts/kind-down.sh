#!/usr/bin/env bash
# make kind-down: delete the kind cluster that `make kind-up` created (and everything in it).
# Settings (environment): KIND_CLUSTER_NAME (leader-sidecar).
set -euo pipefail

if ! command -v kind >/dev/null 2>&1; then
    echo "kind-down: 'kind' is required but not found on PATH; install it and retry" >&2
    exit 127
fi

CLUSTER=${KIND_CLUSTER_NAME:-leader-sidecar}
if kind get clusters 2>/dev/null | grep -qx -- "$CLUSTER"; then
    kind delete cluster --name "$CLUSTER"
else
    echo "kind-down: no kind cluster named $CLUSTER, nothing to delete"
fi
