"""TLS to ZooKeeper: an ensemble that serves clients over TLS only (Netty's
secureClientPort, client certificates required), a group that elects over it, and every
client that must be refused: plaintext, a certificate of another CA, a server whose name
or chain does not match."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from election_support import SESSION_TIMEOUT, SLACK, Group, assert_survived
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from sidecar.lab.candidates import SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble, four_letter
from sidecar.lab.tlsfiles import Authority

REFUSED_FOR = 3.0  # long enough for several connection attempts at every server


@pytest.fixture(scope="module")
def tls_ensemble() -> Iterator[Ensemble]:
    ensemble = Ensemble(size=3, tick_time_ms=200, tls=True)
    try:
        yield ensemble.start()
    finally:
        ensemble.stop()


def _tls(ensemble: Ensemble) -> tuple[str, ...]:
    return (*ensemble.client_args(), "--zk-auth", "group:s3cret")


def _never_connected(member: SidecarProcess) -> bool:
    """Still `unknown` after several tries, and alive: the refusal is not a crash."""
    refused = not wait_for(lambda: member.role() not in (None, "unknown"), REFUSED_FOR)
    assert_survived(member)
    return refused


def test_the_group_elects_and_fails_over_over_tls(
    tls_ensemble: Ensemble, group: Group
) -> None:
    members = group.spawn(tls_ensemble.connect_string, count=3, extra_args=_tls(tls_ensemble))
    with group.monitor() as monitor:
        leader = group.wait_one_leader()
        leader.terminate()
        survivors = [m for m in members if m is not leader]
        new = group.wait_one_leader()
        assert wait_for(
            lambda: all((m.status() or {}).get("leader") == new.identity for m in survivors),
            SLACK,
        )
    assert not monitor.violations()
    status = subprocess.run(
        [sys.executable, "-m", "sidecar", "status", "--zk-hosts", tls_ensemble.connect_string,
         "--election", group.election, *tls_ensemble.client_args(), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert new.identity in status.stdout


def test_a_plaintext_client_is_refused(tls_ensemble: Ensemble, group: Group) -> None:
    client = KazooClient(hosts=tls_ensemble.connect_string, timeout=2.0)
    with pytest.raises(KazooTimeoutError):
        client.start(timeout=REFUSED_FOR)
    client.stop()
    client.close()
    server = tls_ensemble.servers[0]
    try:
        answer = four_letter(server.client_port, "srvr", host=server.host, timeout=2.0)
    except OSError:
        answer = ""
    assert "Mode:" not in answer, "a plaintext four-letter word gets no answer"
    (member,) = group.spawn(tls_ensemble.connect_string, extra_args=("--zk-auth", "group:pw"))
    assert _never_connected(member)


def test_a_client_certificate_of_another_ca_is_refused(
    tls_ensemble: Ensemble, group: Group, tmp_path: Path
) -> None:
    assert tls_ensemble.tls is not None
    stranger = Authority(tmp_path / "other-ca", name="another CA").issue("client")
    (member,) = group.spawn(tls_ensemble.connect_string, extra_args=(
        "--zk-tls-ca", str(tls_ensemble.tls.ca), "--zk-tls-cert", str(stranger.cert),
        "--zk-tls-key", str(stranger.key)))
    assert _never_connected(member)
    (anonymous,) = group.spawn(tls_ensemble.connect_string, extra_args=(
        "--zk-tls-ca", str(tls_ensemble.tls.ca)))
    assert _never_connected(anonymous), "no client certificate at all"


def test_a_server_chain_from_another_ca_is_refused(
    tls_ensemble: Ensemble, group: Group, tmp_path: Path
) -> None:
    """The sidecar trusts only the CA it is given (and the system's): the servers'
    certificates chain to another one."""
    assert tls_ensemble.tls is not None
    other = Authority(tmp_path / "other-ca", name="another CA")
    (member,) = group.spawn(tls_ensemble.connect_string, extra_args=(
        "--zk-tls-ca", str(other.ca), "--zk-tls-cert", str(tls_ensemble.tls.client.cert),
        "--zk-tls-key", str(tls_ensemble.tls.client.key)))
    assert _never_connected(member)
    assert "CERTIFICATE_VERIFY_FAILED" in member.log_text() or "certificate verify failed" in (
        member.log_text())


def test_a_server_name_that_does_not_match_is_refused(group: Group) -> None:
    """The servers' certificate is good, from the right CA, but names another host than the
    connect string's: refused. The same certificate through a name it carries is taken."""
    ensemble = Ensemble(size=3, tick_time_ms=200, tls=True, tls_names=("localhost",))
    try:
        ensemble.start()
        (member,) = group.spawn(ensemble.connect_string, extra_args=_tls(ensemble))
        assert _never_connected(member)
        assert "match" in member.log_text() or "mismatch" in member.log_text(), (
            member.log_text()[-2000:])
        by_name = ",".join(f"localhost:{server.client_port}" for server in ensemble.servers)
        (named,) = group.spawn(by_name, extra_args=_tls(ensemble))
        assert wait_for(lambda: named.role() == "leader", SESSION_TIMEOUT + SLACK)
        assert len(leaders([member, named])) == 1
    finally:
        ensemble.stop()
