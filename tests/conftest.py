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

from sidecar.lab.candidates import LeaseMonitor, SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble
from sidecar.lab.faultproxy import FaultyNetwork

SESSION_TIMEOUT = 2.0
SLACK = 3.0  # generous: tests assert upper bounds only, never benchmark targets

_counter = itertools.count()


@pytest.fixture(scope="session")
def ensemble() -> Iterator[Ensemble]:
    zk = Ensemble(size=3, tick_time_ms=200)
    try:
        yield zk.start()
    finally:
        zk.stop()


@pytest.fixture
def fresh_ensemble() -> Iterator[Ensemble]:
    zk = Ensemble(size=3, tick_time_ms=200)
    try:
        yield zk.start()
    finally:
        zk.stop()


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


class Group:
    """The candidates of one test, cleaned up whatever happens."""

    def __init__(self, tmp_path: Path, election: str) -> None:
        self.tmp_path = tmp_path
        self.election = election
        self.members: list[SidecarProcess] = []

    def spawn(
        self, zk_hosts: str, count: int = 1, session_timeout: float = SESSION_TIMEOUT,
        extra_args: tuple[str, ...] = (), http_port: int = 0,
    ) -> list[SidecarProcess]:
        started = []
        for _ in range(count):
            identity = f"app-{len(self.members)}"
            member = SidecarProcess(
                identity=identity, zk_hosts=zk_hosts, role_dir=self.tmp_path / identity,
                election=self.election, session_timeout=session_timeout,
                extra_args=extra_args, http_port=http_port,
            ).start()
            self.members.append(member)
            started.append(member)
        return started

    def role_dirs(self) -> dict[str, Path]:
        return {member.identity: member.role_dir for member in self.members}

    def monitor(self) -> LeaseMonitor:
        return LeaseMonitor(self.role_dirs())

    def wait_one_leader(self, timeout: float = 20.0) -> SidecarProcess:
        live = [m for m in self.members if m.running]
        assert wait_for(
            lambda: len(leaders(live)) == 1
            and all(m.role() in ("leader", "follower") for m in live),
            timeout,
        ), f"no single leader: {[(m.identity, m.role()) for m in live]}"
        return leaders(live)[0]

    def cleanup(self) -> None:
        for member in self.members:
            member.cleanup()


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
