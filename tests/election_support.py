"""Helpers shared by the election tests (imported by name: a conftest is not importable
reliably when several test directories have one)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from kazoo.client import KazooClient

from sidecar.lab.candidates import LeaseMonitor, SidecarProcess, leaders, wait_for

SESSION_TIMEOUT = 2.0
SLACK = 3.0  # generous: tests assert upper bounds only, never benchmark targets


@contextlib.contextmanager
def kazoo_client(hosts: str, auth: str | None = None) -> Iterator[KazooClient]:
    """A kazoo client for doing things by hand as a person would, with digest credentials
    `user:password` if given; stopped and closed whatever happens."""
    client = KazooClient(hosts=hosts, timeout=4.0,
                         auth_data=[("digest", auth)] if auth else None)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def assert_survived(*members: SidecarProcess) -> None:
    """Each sidecar still runs and has logged no traceback: it may demote, never die."""
    for member in members:
        log = member.log_text()
        assert member.running, f"{member.identity} exited:\n{log[-3000:]}"
        assert "Traceback" not in log, f"{member.identity} logged a traceback:\n{log[-6000:]}"


class Group:
    """The candidates of one test, cleaned up whatever happens."""

    def __init__(self, tmp_path: Path, election: str) -> None:
        self.tmp_path = tmp_path
        self.election = election
        self.members: list[SidecarProcess] = []

    def spawn(
        self, zk_hosts: str, count: int = 1, session_timeout: float = SESSION_TIMEOUT,
        extra_args: tuple[str, ...] = (), http_port: int = 0,
        kubeconfig: Path | None = None, namespace: str | None = None,
    ) -> list[SidecarProcess]:
        started = []
        for _ in range(count):
            identity = f"app-{len(self.members)}"
            member = SidecarProcess(
                identity=identity, zk_hosts=zk_hosts, role_dir=self.tmp_path / identity,
                election=self.election, session_timeout=session_timeout,
                extra_args=extra_args, http_port=http_port,
                kubeconfig=kubeconfig, namespace=namespace,
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
