"""Shared fixtures and fault helpers: a real three-server ZooKeeper ensemble on loopback,
sidecar processes, a fault proxy in front of the ensemble, and the lease monitor.

The ensemble uses tickTime=200 ms, so sessions of 1-4 s are allowed and fault tests take
seconds. Tests that kill servers get an ensemble of their own (`fresh_ensemble`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from election_support import Group

from sidecar.lab.candidates import wait_for
from sidecar.lab.ensemble import Ensemble, running_ensemble
from sidecar.lab.faultproxy import FaultyNetwork

_counter = itertools.count()


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
    from kazoo.client import KazooClient

    client = KazooClient(hosts=ensemble.connect_string, timeout=4.0)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()
