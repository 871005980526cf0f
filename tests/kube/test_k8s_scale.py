"""`kubectl scale` past the chart's `app.replicas` (issue 24, item 5): the chart's Role
must let every pod the StatefulSet may grow to label itself, else a new pod that wins
leads with no `leader` label and the leader Service is empty."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
from cluster_support import RELEASE, wait_until
from k8s_doubles import ELECTION, status

from sidecar.k8s import GROUP_LABEL
from sidecar.lab.cluster.namespace import pod_spec
from sidecar.state import Role


def _statefulset(replicas: int) -> dict[str, Any]:
    """The chart's app StatefulSet as far as names go (`app-0`, `app-1`, ...), with the
    pause image on the lab's kwok nodes (what the tests' pods run)."""
    labels = {GROUP_LABEL: ELECTION, "app": "demo"}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": RELEASE},
        "spec": {
            "replicas": replicas, "serviceName": RELEASE,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec()},
        },
    }


def test_a_pod_added_by_kubectl_scale_can_label_itself(kube_ns, kube_config, make_publisher):
    kube_ns.cluster.kubectl("apply", "-n", kube_ns.namespace, "-f", "-",
                            input=json.dumps(_statefulset(kube_ns.replicas)))
    kube_ns.cluster.kubectl("scale", "-n", kube_ns.namespace, f"statefulset/{RELEASE}",
                            f"--replicas={kube_ns.replicas + 2}")
    newest = f"{RELEASE}-{kube_ns.replicas + 1}"
    try:
        wait_until(lambda: newest in {p["metadata"]["name"] for p in kube_ns.pods()},
                   timeout=20, message=f"{newest} created by the StatefulSet controller")
    except AssertionError:
        # What is tested is the chart's Role, not the controller: the lab's
        # controller-manager can lag for minutes on StatefulSets after the tests that
        # stop kube-apiserver (seen in the full suite). The pod it would make, by name.
        try:
            kube_ns.add_pod(newest, {GROUP_LABEL: ELECTION, "app": "demo"})
        except kubernetes.client.ApiException as error:
            if error.status != 409:  # 409: the controller made it just now
                raise

    publisher, sync, _ = make_publisher(kube_config(newest))
    publisher.publish(status(newest, Role.LEADER, epoch=7))

    assert publisher.flush(10), "the publisher could not write the new pod's label"
    assert kube_ns.labels(newest).get("role") == "leader"
    assert sync.last is True
