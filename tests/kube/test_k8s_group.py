"""`leader-sidecar status --kubernetes` data, and how the client finds the API."""

from __future__ import annotations

import pytest

from sidecar.k8s import (
    KubernetesApiError,
    PodRole,
    api_connection,
    list_group_pods,
)
from sidecar.kubeapi import KubernetesConfigError


def test_list_group_pods(kube_ns, kube_config, add_group_pod):
    add_group_pod("app-1", role="follower")
    add_group_pod("app-0", role="leader")
    add_group_pod("app-2")
    kube_ns.annotate_pod("app-0", "leader-election/epoch", "4294967302")
    kube_ns.annotate_pod("app-0", "leader-election/leader", "app-0")
    kube_ns.annotate_pod("app-1", "leader-election/epoch", "garbage")
    kube_ns.add_pod("other", {"leader-election/name": "another-group", "role": "leader"})

    pods = list_group_pods(kube_config("app-0"))

    assert pods == [
        PodRole("app-0", "leader", 4294967302, "app-0"),
        PodRole("app-1", "follower", None, None),
        PodRole("app-2", None, None, None),
    ]
    assert [pod.agrees_with("app-0") for pod in pods] == [True, True, True]
    assert [pod.agrees_with("app-1") for pod in pods] == [False, False, True]
    assert [pod.agrees_with(None) for pod in pods] == [False, True, True]


def test_list_group_pods_forbidden(kube_ns, kube_config):
    kube_ns.forbid("list", "pods")
    with pytest.raises(KubernetesApiError) as error:
        list_group_pods(kube_config("app-0"))
    assert str(error.value).startswith(
        "forbidden: the sidecar's ServiceAccount needs 'list' on 'pods' in namespace "
        f"'{kube_ns.namespace}'"
    )


def test_list_group_pods_api_down(kube_ns, kube_config):
    kube_ns.down()
    try:
        with pytest.raises(KubernetesApiError, match="unreachable"):
            list_group_pods(kube_config("app-0"), timeout=2)
    finally:
        kube_ns.up()


def test_kubeconfig_is_used_outside_a_cluster(kube_ns, kube_config, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    connection = api_connection(kube_config("app-0"))
    assert connection.server == f"https://127.0.0.1:{kube_ns.proxy.port}"
    assert connection.ca_path == str(kube_ns.cluster.ca_path)
    assert connection.token and connection.token.count(".") == 2  # a TokenRequest JWT


def test_missing_kubeconfig_is_one_clear_error(kube_config, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubernetesConfigError, match="no Kubernetes client configuration"):
        api_connection(kube_config("app-0", kubeconfig=str(tmp_path / "missing")))
