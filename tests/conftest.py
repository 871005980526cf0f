"""Shared fixtures and fault helpers: a real three-server ZooKeeper ensemble on loopback,
sidecar processes, a fault proxy in front of the ensemble, the lease monitor, and the
real local Kubernetes control plane (`cluster`).

`cluster` is one cluster per test session (etcd, kube-apiserver with RBAC and Pod Security
admission, controller-manager, scheduler, kwok nodes), torn down at the end whatever
happens; a session killed before its teardown has its cluster removed by the next one;
when a test failed, the components' logs are kept under `.test-artifacts/`.

The ensemble uses tickTime=200 ms, so sessions of 1-4 s are allowed and fault tests take
seconds. Tests that kill servers get an ensemble of their own (`fresh_ensemble`).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from election_support import Group, kazoo_client

from sidecar.lab.candidates import wait_for
from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.lab.ensemble import Ensemble, running_ensemble
from sidecar.lab.faultproxy import FaultyNetwork

_counter = itertools.count()

ARTIFACTS = Path(__file__).resolve().parents[1] / ".test-artifacts"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_clusters(workdir: Path) -> None:
    """Clusters of test sessions that were killed before their teardown ran."""
    for stale in sorted((workdir / "clusters").glob("pytest-*")):
        pid = stale.name.removeprefix("pytest-")
        if pid.isdigit() and not _alive(int(pid)):
            LocalCluster(stale.name, workdir).down()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    bin_dir = binaries.ensure_built()
    workdir = binaries.cache_root() / "test-clusters"
    _remove_stale_clusters(workdir)
    local = LocalCluster(f"pytest-{os.getpid()}", workdir, nodes=2, bin_dir=bin_dir)
    started = time.monotonic()
    try:
        local.up()
        logging.getLogger("tests").info("cluster up in %.1f s", time.monotonic() - started)
        yield local
    finally:
        if request.session.testsfailed:
            kept = local.collect_logs(ARTIFACTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}")
            print(f"\ncontrol-plane logs of the failed run kept in {kept}")
        local.down()


@pytest.fixture(scope="session")
def ensemble() -> Iterator[Ensemble]:
    with running_ensemble(size=3, tick_time_ms=200) as zk:
        yield zk


@pytest.fixture
def fresh_ensemble() -> Iterator[Ensemble]:
    """An ensemble of the test's own, for tests that kill servers."""
    with running_ensemble(size=3, tick_time_ms=200) as zk:
        yield zk


@pytest.fixture
def election_name() -> str:
    return f"e{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def network(ensemble: Ensemble) -> Iterator[FaultyNetwork]:
    proxies = FaultyNetwork([server.client_port for server in ensemble.servers])
    try:
        yield proxies
    finally:
        proxies.close()


@pytest.fixture
def group(tmp_path: Path, election_name: str) -> Iterator[Group]:
    candidates = Group(tmp_path, election_name)
    try:
        yield candidates
    finally:
        candidates.cleanup()


@pytest.fixture
def until() -> Callable[..., bool]:
    return wait_for


@pytest.fixture
def zk_client(ensemble: Ensemble) -> Iterator[object]:
    """A plain kazoo client, for doing things by hand as an operator would."""
    with kazoo_client(ensemble.connect_string) as client:
        yield client
