"""Fixtures for the Kubernetes face: kmock's emulator over real HTTP (see kmock_support.py),
sidecar configs pointing at it, publishers and operators that are always stopped.

Reusable by the ZooKeeper-integrated tests: `kube_api` (the emulated API server, with
`.kubeconfig_path`, `.namespace`, `.add_pod`, `.pod`, `.events`, `.down/.up/.slow/.forbid/
.fail/.heal`), `kube_config` (a `Config` factory for a candidate), `wait_until`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_doubles import ELECTION, FakeControl, Sync
from kmock_support import KubeApi

from sidecar.config import Config
from sidecar.k8s import GROUP_LABEL, Backoff, KubernetesPublisher
from sidecar.metrics import Metrics
from sidecar.operator import OperatorHandle, start_operator


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeApi]:
    api = KubeApi(tmp_path).start()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kube_config(kube_api: KubeApi, tmp_path: Path) -> Callable[..., Config]:
    """`kube_config("app-0")`: the Config of a candidate whose pod is `app-0`."""

    def make(identity: str, **overrides: Any) -> Config:
        fields: dict[str, Any] = {
            "zk_hosts": "127.0.0.1:2181",
            "election": ELECTION,
            "identity": identity,
            "namespace": kube_api.namespace,
            "kubeconfig": str(kube_api.kubeconfig_path),
            "role_dir": tmp_path / identity,
            "http_port": 0,
        }
        fields.update(overrides)
        return Config(**fields)

    return make


@pytest.fixture
def add_group_pod(kube_api: KubeApi) -> Callable[..., dict[str, Any]]:
    def add(name: str, **labels: str) -> dict[str, Any]:
        return kube_api.add_pod(name, {GROUP_LABEL: ELECTION, "app": "demo", **labels})

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
