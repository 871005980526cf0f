"""The namespaced soak's network (`sidecar/lab/netns.py`): hosts on a bridge of the run's,
faults that hold inside one namespace, and nothing left behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from sidecar.lab import netns
from sidecar.lab.netns import Host, LabNet

pytestmark = pytest.mark.skipif(netns.available() is not None,
                                reason=f"no network namespaces: {netns.available()}")

PORT = 7070


def _names(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


@pytest.fixture
def lab() -> Iterator[LabNet]:
    net = LabNet().up()
    try:
        yield net
    finally:
        net.close()


def _serve(host: Host) -> subprocess.Popen[bytes]:
    """A TCP server in `host` that answers every connection with its name."""
    code = ("import socket\n"
            f"s = socket.create_server(('{host.address}', {PORT}))\n"
            "while True:\n"
            "    c, _ = s.accept()\n"
            f"    c.sendall(b'{host.name}')\n"
            "    c.close()\n")
    return subprocess.Popen([*host.wrapper, "python3", "-c", code])


def _reaches(client: Host, server: Host, timeout: float = 1.0) -> bool:
    code = (f"import socket; c = socket.create_connection(('{server.address}', {PORT}), "
            f"{timeout}); print(c.recv(64).decode())")
    result = subprocess.run([*client.wrapper, "python3", "-c", code],
                            capture_output=True, text=True, timeout=timeout + 10, check=False)
    return result.stdout.strip() == server.name


def _wait_reaches(client: Host, server: Host) -> bool:
    return any(_reaches(client, server) for _ in range(20))


def test_hosts_reach_each_other_and_faults_hold_in_one_namespace(lab: LabNet) -> None:
    a, b, c = (lab.add(name) for name in ("a", "b", "c"))
    servers = [_serve(host) for host in (a, b, c)]
    try:
        assert _wait_reaches(a, b) and _wait_reaches(b, c) and _wait_reaches(c, a)
        # One way dropped in `a`: a cannot reach b; b's packets to a are dropped at a's
        # INPUT only when both ways are cut.
        a.drop([b.address], "out")
        assert not _reaches(a, b)
        assert _reaches(a, c), "only the peer named is cut"
        a.heal()
        assert _wait_reaches(a, b)
        a.drop([b.address])
        assert not _reaches(b, a) and not _reaches(a, b)
        assert _wait_reaches(b, c) and _wait_reaches(c, a), "the bridge node still sees both"
        a.heal()
        a.reject([b.address])
        assert not _reaches(a, b)
        a.heal()
        # The narrow link carries the connection to b through its own class, and the loss
        # rule is in place; the link to c is untouched.
        a.lossy([b.address], 0.01, 64)
        assert any(_reaches(a, b, timeout=5.0) for _ in range(5))
        classes = _names(*a.wrapper, "tc", "-s", "class", "show", "dev", "eth0")
        narrow = classes.split("class htb 1:2")[1]
        assert "rate 64Kbit" in narrow and " 0 bytes" not in narrow.split("\n")[1], classes
        assert "statistic" in _names(*a.wrapper, "iptables", "-S", "OUTPUT")
        a.heal()
        assert "htb" not in _names(*a.wrapper, "tc", "qdisc", "show", "dev", "eth0")
        assert "statistic" not in _names(*a.wrapper, "iptables", "-S", "OUTPUT")
    finally:
        for server in servers:
            server.kill()
            server.wait(10)


def test_close_removes_every_namespace_bridge_and_rule() -> None:
    net = LabNet().up()
    net.add("x")
    assert net.bridge in _names("ip", "-o", "link", "show", "type", "bridge")
    net.close()
    assert net.bridge not in _names("ip", "netns", "list")
    assert net.bridge not in _names("ip", "-o", "link", "show", "type", "bridge")
    assert net.bridge not in _names("iptables", "-S", "FORWARD")


def test_leftovers_of_a_killed_run_are_removed_and_a_live_run_is_kept(lab: LabNet) -> None:
    lab.add("live")
    dead = "lss7ffffff0x0-zk1"  # a process id that does not run
    subprocess.run(["ip", "netns", "add", dead], check=True)
    removed = netns.remove_leftovers()
    assert dead in removed and dead not in _names("ip", "netns", "list")
    assert f"{lab.bridge}-live" in _names("ip", "netns", "list")
