"""A ZooKeeper *server* cut off from its peers keeps answering local reads for up to
syncLimit ticks. A leader connected only to that server must not keep renewing its lease
on those reads while the quorum expires its session and elects someone else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from election_support import SLACK, Group

from sidecar.lab.candidates import wait_for
from sidecar.lab.ensemble import Ensemble, Server
from sidecar.lab.faultproxy import FaultProxy

SESSION = 4.0  # the most a 200 ms tick allows; F notices its isolation only after 6 s


class IsolatableEnsemble(Ensemble):
    """Server 3 (`isolated`) reaches its peers' quorum ports only through proxies."""

    def __init__(self) -> None:
        super().__init__(size=3, tick_time_ms=200, sync_limit=30)
        self.proxies: dict[int, FaultProxy] = {}

    @property
    def isolated(self) -> Server:
        return self.servers[2]

    def _write_config(self, server: Server) -> Path:
        path = super()._write_config(server)
        if server is not self.isolated:
            return path
        lines = []
        for line in path.read_text().splitlines():
            for peer in self.servers[:2]:
                if line.startswith(f"server.{peer.myid}="):
                    proxy = self.proxies.setdefault(peer.myid, FaultProxy(peer.quorum_port))
                    line = line.replace(f":{peer.quorum_port}:", f":{proxy.port}:")
            lines.append(line)
        path.write_text("\n".join(lines) + "\n")
        return path

    def cut_isolated_from_peers(self) -> None:
        for proxy in self.proxies.values():
            proxy.blackhole()

    def stop(self, keep_data: bool = False) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        super().stop(keep_data)


@pytest.fixture
def isolatable() -> Iterator[IsolatableEnsemble]:
    zk = IsolatableEnsemble()
    try:
        # Servers 1 and 2 first, so that the ZooKeeper leader is one of them and the
        # isolated server is a follower.
        for server in zk.servers[:2]:
            zk.start_server(server)
        zk.wait_serving(servers=zk.servers[:2])
        zk.start_server(zk.isolated)
        zk.wait_serving()
        yield zk
    finally:
        zk.stop()


def test_leader_behind_a_partitioned_server_loses_its_lease_in_time(
    isolatable: IsolatableEnsemble, group: Group
) -> None:
    (stranded,) = group.spawn(isolatable.isolated.address, session_timeout=SESSION)
    assert group.wait_one_leader() is stranded
    others = ",".join(server.address for server in isolatable.servers[:2])
    group.spawn(others, count=2, session_timeout=SESSION)
    group.wait_one_leader()
    with group.monitor() as monitor:
        isolatable.cut_isolated_from_peers()
        successors = group.members[1:]
        assert wait_for(lambda: any(m.role() == "leader" for m in successors), SESSION + SLACK)
        assert wait_for(lambda: stranded.role() != "leader", 30 * 0.2 + SLACK)
    assert monitor.violations() == [], "the stranded leader's lease outlived its session"
