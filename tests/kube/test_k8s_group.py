"""`leader-sidecar status --kubernetes` data, and how the client finds the API."""

from __future__ import annotations

import pytest

from sidecar.k8s import (
    KubernetesApiError,
    KubernetesConfigError,
    PodRole,
    api_connection,
    list_group_pods,
)


def test_list_group_pods(kube_api, kube_config, add_group_pod):
    add_group_pod("app-1", role="follower")
    add_group_pod("app-0", role="leader")
    add_group_pod("app-2")
    kube_api.annotate_pod("app-0", "leader-election/epoch", "4294967302")
    kube_api.annotate_pod("app-0", "leader-election/leader", "app-0")
    kube_api.annotate_pod("app-1", "leader-election/epoch", "garbage")
    kube_api.add_pod("other", {"leader-election/name": "another-group", "role": "leader"})

    pods = list_group_pods(kube_config("app-0"))

    assert pods == [
        PodRole("app-0", "leader", 4294967302, "app-0"),
        PodRole("app-1", "follower", None, None),
        PodRole("app-2", None, None, None),
    ]
    assert [pod.agrees_with("app-0") for pod in pods] == [True, True, True]
    assert [pod.agrees_with("app-1") for pod in pods] == [False, False, True]
    assert [pod.agrees_with(None) for pod in pods] == [False, True, True]


def test_list_group_pods_forbidden(kube_api, kube_config):
    kube_api.forbid("list", "pods")
    with pytest.raises(KubernetesApiError) as error:
        list_group_pods(kube_config("app-0"))
    assert str(error.value).startswith(
        "forbidden: the sidecar's ServiceAccount needs 'list' on 'pods' in namespace 'default'"
    )


def test_list_group_pods_api_down(kube_api, kube_config):
    kube_api.down()
    with pytest.raises(KubernetesApiError, match="unreachable"):
        list_group_pods(kube_config("app-0"), timeout=2)


def test_kubeconfig_is_used_outside_a_cluster(kube_api, kube_config, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    connection = api_connection(kube_config("app-0"))
    assert connection.server == kube_api.url
    assert connection.token == "kmock-test-token"


def test_missing_kubeconfig_is_one_clear_error(kube_config, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubernetesConfigError, match="no Kubernetes client configuration"):
        api_connection(kube_config("app-0", kubeconfig=str(tmp_path / "missing")))
