"""The Kubernetes tests' view of the local control plane: `sidecar/lab/cluster/namespace.py`
(shared with the benchmarks and the soak), under the names the tests import."""

from sidecar.lab.cluster.namespace import (
    RELEASE,
    ROLE,
    AuditRecord,
    KubeNamespace,
    cluster_namespace,
    names,
    render_chart_rbac,
    wait_until,
)

__all__ = [
    "RELEASE", "ROLE", "AuditRecord", "KubeNamespace", "cluster_namespace", "names",
    "render_chart_rbac", "wait_until",
]
