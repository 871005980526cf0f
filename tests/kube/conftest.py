"""Fixtures for the Kubernetes face on the real local control plane.

The session's cluster comes from tests/conftest.py (`cluster`). Each test gets a namespace
of its own (`kube_ns`, see cluster_support.py) with the chart's RBAC, deleted after it.

Also: `kube_config` (a `Config` factory for a candidate whose pod lives in that namespace),
publishers and operators that are always stopped, and `api_proxy` (a proxy in front of the
apiserver that acts on one client connection, with a kubeconfig of the sidecar through it).
"""

from __future__ import annotations

import itertools
import logging
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_proxy import ApiProxy
from cluster_support import KubeNamespace
from k8s_doubles import ELECTION, FakeControl, Sync

from sidecar.config import Config
from sidecar.k8s import GROUP_LABEL, Backoff, KubernetesPublisher
from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.metrics import Metrics
from sidecar.operator import OperatorHandle, start_operator

_namespaces = itertools.count()


@pytest.fixture
def kube_ns(cluster: LocalCluster, tmp_path: Path) -> Iterator[KubeNamespace]:
    name = f"t{next(_namespaces)}-{uuid.uuid4().hex[:6]}"
    namespace = KubeNamespace(cluster, name, tmp_path)
    try:
        yield namespace.create()
    finally:
        namespace.delete()


@pytest.fixture
def api_proxy(kube_ns: KubeNamespace) -> Iterator[tuple[ApiProxy, Path]]:
    """An `ApiProxy` in front of the apiserver and the sidecar's kubeconfig through it."""
    proxy = ApiProxy(int(urllib.parse.urlsplit(kube_ns.cluster.server()).port or 443))
    document = yaml.safe_load(Path(kube_ns.kubeconfig_path).read_text())
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig = Path(kube_ns.kubeconfig_path).with_name("api-proxy-kubeconfig.yaml")
    kubeconfig.write_text(yaml.safe_dump(document))
    try:
        yield proxy, kubeconfig
    finally:
        proxy.close()


@pytest.fixture
def kube_config(kube_ns: KubeNamespace, tmp_path: Path) -> Callable[..., Config]:
    """`kube_config("app-0")`: the Config of a candidate whose pod is `app-0`."""

    def make(identity: str, **overrides: Any) -> Config:
        fields: dict[str, Any] = {
            "zk_hosts": "127.0.0.1:2181",
            "election": ELECTION,
            "identity": identity,
            "namespace": kube_ns.namespace,
            "kubeconfig": str(kube_ns.kubeconfig_path),
            "role_dir": tmp_path / identity,
            "http_port": 0,
        }
        fields.update(overrides)
        return Config(**fields)

    return make


@pytest.fixture
def add_group_pod(kube_ns: KubeNamespace) -> Callable[..., dict[str, Any]]:
    def add(name: str, *, scheduled: bool = True, **labels: str) -> dict[str, Any]:
        return kube_ns.add_pod(name, {GROUP_LABEL: ELECTION, "app": "demo", **labels},
                               scheduled=scheduled)

    return add


@pytest.fixture
def make_publisher(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., tuple[KubernetesPublisher, Sync, Metrics]]]:
    publishers: list[KubernetesPublisher] = []

    def make(config: Config, **kwargs: Any) -> tuple[KubernetesPublisher, Sync, Metrics]:
        metrics = Metrics(config.election)
        sync = Sync()
        kwargs.setdefault("backoff", Backoff(base=0.05, cap=0.5))
        publisher = KubernetesPublisher(config, metrics, sync, **kwargs)
        publishers.append(publisher)
        return publisher, sync, metrics

    yield make
    for publisher in publishers:
        publisher.stop()


@pytest.fixture
def make_operator() -> Iterator[Callable[..., OperatorHandle]]:
    handles: list[OperatorHandle] = []

    def make(
        config: Config, control: FakeControl, publisher: KubernetesPublisher
    ) -> OperatorHandle:
        handle = start_operator(config, control, publisher)
        handles.append(handle)
        assert handle.wait_ready(20), "kopf did not start"
        return handle

    yield make
    for handle in handles:
        assert handle.stop(15), "kopf did not stop"


@pytest.fixture
def caplog_k8s(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="sidecar")
    return caplog
