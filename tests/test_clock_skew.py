"""The lease's clock bound (sidecar/election/lease.py, assumption 3.), on a real clock skew.

A leader runs under libfaketime with every clock at rate `rho` of the real one. Right
after one of its renewals its link to ZooKeeper goes silent (a blackhole: it cannot tell),
so its session expires at the newest touch plus T and the heir, a sidecar with a true
clock, leads. The slow leader's lease, `T/2 - margin` of its own clock, lasts
`(T/2 - margin)/rho` real seconds: at `slowest_rate` (0.45 at T = 2 s) exactly T, so it
ends before the session does; below it the lease outlives the session and the soak's
checker, reading the leader's published times on its own clock as an application on that
node would, must see two leases at once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from election_support import SLACK

from sidecar.election import lease
from sidecar.lab.candidates import SidecarProcess, wait_for
from sidecar.lab.clockskew import ClockMap, ClockSkew
from sidecar.lab.ensemble import Ensemble, running_ensemble
from sidecar.lab.faultproxy import FaultyNetwork
from sidecar.lab.soak.checker import Checker

SESSION = 2.0  # the most a 100 ms tick allows
TICK_MS = 100  # a short tick: the session's expiry is rounded up to the next one
ROUNDS = 3
BOUND = lease.slowest_rate(SESSION)
# Past the bound by enough that the overlap is certain: the ZooKeeper leader learns the
# last touch up to half a tick late, rounds the expiry up to the next tick, and the heir
# needs its notification: the session ends at most ~0.18 s after touch + T, while at
# 0.38 the lease lasts 0.9/0.38 = 2.37 s: at least 0.19 s of two leases, room for a busy
# machine's delays between the anchor's send and its arrival.
PAST = round(BOUND - 0.07, 3)


@pytest.fixture(scope="module")
def quick_ensemble() -> Iterator[Ensemble]:
    with running_ensemble(size=3, tick_time_ms=TICK_MS) as zk:
        yield zk


class SkewedRounds:
    """A skewed leader behind a fault proxy, its heir, and the checker that judges them."""

    def __init__(self, ensemble: Ensemble, tmp_path: Path, rate: float) -> None:
        self.ensemble, self.tmp_path, self.rate = ensemble, tmp_path, rate
        self.network = FaultyNetwork([server.client_port for server in ensemble.servers])
        self.election = f"skew-{round(rate * 1000)}-{uuid.uuid4().hex[:8]}"
        self.members: list[SidecarProcess] = []

    def _spawn(self, name: str, hosts: str, clock: ClockSkew | None) -> SidecarProcess:
        member = SidecarProcess(
            identity=name, zk_hosts=hosts, role_dir=self.tmp_path / name,
            election=self.election, session_timeout=SESSION, clock=clock).start()
        self.members.append(member)
        return member

    def round(self, index: int) -> dict[str, Any]:
        """One handover away from a cut-off skewed leader; what the checker saw."""
        self.network.heal()
        slow = self._spawn(f"slow-{index}", self.network.connect_string, ClockSkew(self.rate))
        assert wait_for(lambda: slow.role() == "leader", 20), slow.log_text()[-3000:]
        heir = self._spawn(f"true-{index}", self.ensemble.connect_string, None)
        assert wait_for(lambda: heir.role() == "follower", 20), heir.log_text()[-3000:]
        checker = Checker({m.identity: m.role_dir for m in (slow, heir)}, None)
        stop = threading.Event()
        sampler = threading.Thread(target=checker.run, args=(stop,), daemon=True)
        sampler.start()
        try:
            # Right after a renewal: the newest anchor is the last touch the server gets.
            renewed = (slow.status() or {}).get("lease_expires")
            assert wait_for(lambda: (slow.status() or {}).get("lease_expires") != renewed,
                            10, 0.001)
            self.network.blackhole()
            assert wait_for(lambda: heir.role() == "leader", SESSION / BOUND + SLACK)
            assert wait_for(lambda: slow.role() != "leader", 2 * SESSION / self.rate + SLACK)
        finally:
            stop.set()
            sampler.join(10)
        report = checker.report()
        clock = ClockMap.read(slow.clock_map_path)
        assert clock is not None and abs(clock.rate - self.rate) < 1e-6
        for member in (slow, heir):
            member.terminate(20)
        return report

    def close(self) -> None:
        for member in self.members:
            member.cleanup()
        self.network.close()


@pytest.fixture
def rounds(quick_ensemble: Ensemble, tmp_path: Path,
           request: pytest.FixtureRequest) -> Iterator[SkewedRounds]:
    runner = SkewedRounds(quick_ensemble, tmp_path, request.param)
    try:
        yield runner
    finally:
        runner.close()


def test_the_bound_is_written_beside_the_lease_and_follows_its_margin() -> None:
    assert lease.slowest_rate(SESSION) == pytest.approx(0.45)
    assert lease.slowest_rate_any(SESSION) == pytest.approx(1 - lease.DRIFT_RATIO)
    assert lease.fastest_ratio(SESSION) == pytest.approx(1.1 / 0.9)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("rounds", [BOUND], indirect=True)
def test_a_slow_leader_at_the_bound_never_holds_its_lease_past_its_session(
        rounds: SkewedRounds) -> None:
    for index in range(ROUNDS):
        report = rounds.round(index)
        assert report["two_lease_samples"] == 0, report["two_lease_examples"][:3]
        assert report["overlapping_terms"] == []


@pytest.mark.timeout(180)
@pytest.mark.parametrize("rounds", [PAST], indirect=True)
def test_a_slow_leader_past_the_bound_is_caught_holding_two_leases(
        rounds: SkewedRounds) -> None:
    reports = [rounds.round(index) for index in range(ROUNDS)]
    # Every round is a violation to the checker: the terms rebuilt from the files overlap
    # (a packet of the leader's that reached its server after the anchor moves the
    # session's end later, and an overlap of a few milliseconds falls between samples);
    # and its samples caught two leases at once too.
    assert all(report["overlapping_terms"] for report in reports), \
        [report["two_lease_samples"] for report in reports]
    assert sum(report["two_lease_samples"] for report in reports) > 0
