"""The lease, audited (issue 23): three ways two unexpired leases could be published.

1. A stall or a freeze between the two clock reads that turn the lease's monotonic end
   into `lease_expires` (`lease.monotonic_to_wall`): the seam `sidecar.lab.seams` puts
   it exactly there.
2. The leader's znode deleted by a client that holds the group's credentials, while the
   leader's session lives (`presence`).
3. The first anchor after an idle spell at the minimum session timeout (2 ticks): the
   lease rests on the newest touch the ZooKeeper leader certainly received (`lease` 2.).

Each is watched from outside, as an application would read the files, by `LeaseMonitor`:
terms rebuilt from the files' timestamps, instants at which two files say leader with
unexpired leases, and epochs of unexpired leases going backwards.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from election_support import SESSION_TIMEOUT, SLACK, Group, kazoo_client
from kazoo.client import KazooClient

from sidecar.config import MIN_SESSION_TIMEOUT
from sidecar.election import lease
from sidecar.election.presence import markers_path
from sidecar.lab.candidates import LeaseMonitor, SidecarProcess, wait_for
from sidecar.lab.ensemble import Ensemble, running_ensemble
from sidecar.lab.seams import TRIGGER_ENV
from sidecar.rolefiles import read_status
from sidecar.state import parse_isoformat_z
from sidecar.zk import ZkSession

AUTH = "elector:s3cret"


def _settled(group: Group) -> SidecarProcess:
    return group.wait_one_leader(timeout=SESSION_TIMEOUT + 3 * SLACK)


def _assert_one_lease_at_a_time(monitor: LeaseMonitor) -> None:
    assert monitor.violations() == [], f"two candidates' terms overlap: {monitor.violations()}"
    assert monitor.double_instants == 0, "a sampler saw two unexpired leases at once"
    assert monitor.regressions == [], "an unexpired lease's epoch went backwards"


def _seamed_leader(group: Group, ensemble: Ensemble, trigger: Path) -> SidecarProcess:
    """A group of three whose leader runs with the clock-reads seam armed by `trigger`."""
    (leader,) = group.spawn(ensemble.connect_string)
    leader.cleanup()  # respawned below with the seam: same identity, same role directory
    group.members.clear()
    leader = SidecarProcess(
        identity="app-0", zk_hosts=ensemble.connect_string, role_dir=group.tmp_path / "app-0",
        election=group.election, session_timeout=SESSION_TIMEOUT,
        module="sidecar.lab.seams", env={**os.environ, TRIGGER_ENV: str(trigger)},
    ).start()
    group.members.append(leader)
    assert _settled(group) is leader
    group.spawn(ensemble.connect_string, count=2)
    _settled(group)
    return leader


def _fired_at(trigger: Path) -> dt.datetime:
    fired = trigger.with_name(trigger.name + ".fired")
    assert wait_for(fired.exists, SESSION_TIMEOUT + SLACK), "the leader never reached the seam"
    return dt.datetime.fromisoformat(fired.read_text())


# -- 1. the clock reads ---------------------------------------------------------------------


class _LeaseLog:
    """Every distinct `lease_expires` one role directory published, in order."""

    def __init__(self, role_dir: Path) -> None:
        self.role_dir = role_dir
        self.leases: list[dt.datetime] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _LeaseLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            document = read_status(self.role_dir)
            text = None if document is None else document.get("lease_expires")
            if document is not None and document.get("role") == "leader" and text:
                expires = parse_isoformat_z(str(text))
                if expires is not None and (not self.leases or self.leases[-1] != expires):
                    self.leases.append(expires)
            time.sleep(0.002)

    def first_after(self, instant: dt.datetime, timeout: float) -> dt.datetime:
        known = len(self.leases)
        assert wait_for(lambda: len(self.leases) > known, timeout), "no lease published since"
        return self.leases[known]


def test_stall_between_the_clock_reads_only_shortens_the_lease(
    ensemble: Ensemble, group: Group, tmp_path: Path
) -> None:
    """A renewal stalled 0.3 s between its clock reads: the lease it publishes ends no later
    than its anchor's lease (sent before the stall: at most T/2 - margin after it)."""
    trigger = tmp_path / "stall"
    leader = _seamed_leader(group, ensemble, trigger)
    with _LeaseLog(leader.role_dir) as published:
        time.sleep(0.1)
        trigger.write_text("sleep 0.3")
        fired = _fired_at(trigger)
        expires = published.first_after(fired, SLACK)
    bound = fired + dt.timedelta(
        seconds=lease.LEASE_FRACTION * SESSION_TIMEOUT - lease.margin(SESSION_TIMEOUT)
    )
    assert expires <= bound, f"published {expires}, past the anchor's end {bound}"
    assert leader.role() == "leader"


def test_freeze_between_the_clock_reads_never_publishes_an_old_lease(
    ensemble: Ensemble, group: Group, tmp_path: Path
) -> None:
    """SIGSTOP of the whole leader between its clock reads, past the session timeout: the
    heir leads; on SIGCONT the old leader must not publish `leader` again on its old epoch."""
    trigger = tmp_path / "freeze"
    with group.monitor() as monitor:
        old = _seamed_leader(group, ensemble, trigger)
        trigger.write_text("stop")
        _fired_at(trigger)
        others = [m for m in group.members if m is not old]
        assert wait_for(lambda: any(m.role() == "leader" for m in others),
                        SESSION_TIMEOUT + SLACK)
        time.sleep(0.3)
        old.signal(signal.SIGCONT)
        assert wait_for(lambda: old.role() == "follower", SESSION_TIMEOUT + 2 * SLACK)
        time.sleep(0.3)
    _assert_one_lease_at_a_time(monitor)
    assert "Traceback" not in old.log_text()


# -- 2. the leader's znode deleted by hand -------------------------------------------------


@pytest.fixture
def operator(ensemble: Ensemble) -> Iterator[KazooClient]:
    """zkCli in the hands of someone who holds the group's credentials."""
    with kazoo_client(ensemble.connect_string, AUTH) as client:
        yield client


def _leader_znode(client: KazooClient, path: str, identity: str) -> str:
    found = {}
    for name in client.get_children(path):
        data, _ = client.get(f"{path}/{name}")
        found[name] = data
        if f'"identity": "{identity}"'.encode() in data:
            return f"{path}/{name}"
    raise AssertionError(f"no znode of {identity} in {path}: {found}")


ROUNDS = 20


def test_leader_znode_deleted_with_the_groups_credentials(
    ensemble: Ensemble, group: Group, operator: KazooClient
) -> None:
    """20 rounds: the leader's znode deleted by a client with the group's credentials
    while the leader runs. Its successor waits for it to demote; no sampler instant shows
    two unexpired leases, and a new leader takes over every time."""
    group.spawn(ensemble.connect_string, count=3, extra_args=("--zk-auth", AUTH))
    path = f"/leader-election/{group.election}"
    handovers = []
    with group.monitor() as monitor:
        for _ in range(ROUNDS):
            old = _settled(group)
            operator.delete(_leader_znode(operator, path, old.identity))
            deleted = time.monotonic()
            others = [m for m in group.members if m is not old]
            assert wait_for(lambda: any(m.role() == "leader" for m in others),  # noqa: B023
                            SESSION_TIMEOUT + SLACK), "nobody else led after the deletion"
            handovers.append(time.monotonic() - deleted)
    _assert_one_lease_at_a_time(monitor)
    # The old leader, alive, releases its marker once demoted: far sooner than its lease.
    assert sorted(handovers)[len(handovers) // 2] < lease.release_wait(SESSION_TIMEOUT)
    # One marker per candidate, once the last old leader's volunteer batch (the release of
    # its old marker, then its new pair) is through.
    assert wait_for(lambda: len(operator.get_children(markers_path(path))) == 3, SLACK)
    for member in group.members:
        assert "Traceback" not in member.log_text()


def test_frozen_leader_whose_znode_is_deleted_is_waited_for(
    ensemble: Ensemble, group: Group, operator: KazooClient
) -> None:
    """The leader frozen, then its znode deleted: it cannot release its marker, so its heir
    holds back until the leader's lease has certainly run out (or its session expired)."""
    group.spawn(ensemble.connect_string, count=3, extra_args=("--zk-auth", AUTH))
    path = f"/leader-election/{group.election}"
    with group.monitor() as monitor:
        old = _settled(group)
        old.freeze()
        operator.delete(_leader_znode(operator, path, old.identity))
        others = [m for m in group.members if m is not old]
        assert wait_for(lambda: any(m.role() == "leader" for m in others),
                        SESSION_TIMEOUT + SLACK)
        old.thaw()
        assert wait_for(lambda: old.role() == "follower", SESSION_TIMEOUT + 2 * SLACK)
    _assert_one_lease_at_a_time(monitor)


# -- 3. the minimum session timeout --------------------------------------------------------


@pytest.mark.parametrize("timeout", [MIN_SESSION_TIMEOUT, 2.0, 6.0, 60.0, 600.0])
def test_invariants_hold_for_every_timeout_the_configuration_accepts(timeout: float) -> None:
    lease.check_invariants(timeout)
    assert lease.idle_lease(timeout) > lease.renew_interval(timeout) + lease.margin(timeout)


def test_invariants_refuse_a_timeout_too_short_for_a_lease() -> None:
    with pytest.raises(lease.LeaseConfigError, match="too short for a lease"):
        lease.check_invariants(0.5)


@pytest.fixture(scope="module")
def two_tick_ensemble() -> Iterator[Ensemble]:
    """tickTime = half the configuration's minimum timeout: that timeout is 2 ticks, the
    least a server grants, where a half tick of unforwarded touches is a quarter of T."""
    with running_ensemble(size=3, tick_time_ms=int(MIN_SESSION_TIMEOUT * 1000 / 2)) as zk:
        yield zk


def _session(ensemble: Ensemble) -> ZkSession:
    session = ZkSession(ensemble.connect_string, MIN_SESSION_TIMEOUT)
    session.start()
    assert session.wait_connected(10)
    assert session.negotiated_timeout == MIN_SESSION_TIMEOUT
    return session


def _anchor(session: ZkSession, node: str) -> tuple[float, float]:
    """One quorum-committed anchor: its send time and the lease the election takes on it."""
    stat, _ = session.confirmed_stat(node)
    assert stat is not None
    sent = session.answered_send_time()
    assert sent is not None
    t = MIN_SESSION_TIMEOUT
    touch = session.sends.touch(session.session_id, sent, lease.forwarded_before(sent, t))
    return sent, lease.lease_deadline(sent, t, touch)


def test_idle_session_at_two_ticks_is_touched_by_kazoos_pings(two_tick_ensemble: Ensemble) -> None:
    """Idle, the session is touched only by kazoo's pings (every T/3): the lease on the
    first anchor after it still covers the renewal that follows (`idle_lease`)."""
    session = _session(two_tick_ensemble)
    try:
        node = session.client.create("/idle", ephemeral=True, sequence=True)
        time.sleep(3 * MIN_SESSION_TIMEOUT)  # pings only
        sent, deadline = _anchor(session, node)
        t = MIN_SESSION_TIMEOUT
        assert deadline - sent >= lease.idle_lease(t) - 0.02, "kazoo's pings were not seen"
        assert deadline - sent <= lease.LEASE_FRACTION * t - lease.margin(t) + 1e-9
    finally:
        session.close()


def test_silent_session_at_two_ticks_gets_only_what_its_last_touch_allows(
    two_tick_ensemble: Ensemble,
) -> None:
    """No packet for 0.6 T before the anchor (kazoo's pings held back, as in a process that
    was descheduled): the ZooKeeper leader may hold no touch newer than the last one before
    the silence, so the lease ends at most T after it, well before `t_send + T/2`. The
    session itself still lives (a real server expires it only T after that touch)."""
    session = _session(two_tick_ensemble)
    connection = session.client._connection
    try:
        node = session.client.create("/silent", ephemeral=True, sequence=True)
        time.sleep(0.5)
        held = connection._send_ping
        connection._send_ping = lambda *_: None  # silence: no touch at all
        last = time.monotonic()
        time.sleep(0.6 * MIN_SESSION_TIMEOUT)
        connection._send_ping = held
        sent, deadline = _anchor(session, node)
        t = MIN_SESSION_TIMEOUT
        assert deadline <= last + t - lease.margin(t) + 1e-9, "lease past the last touch + T"
        assert deadline < sent + lease.LEASE_FRACTION * t - lease.margin(t) - 0.05
        assert session.connected
    finally:
        session.close()
