"""One pod labelled leader at every instant of a graceful handover, as a watch of the pods
sees it (what the leader Service's EndpointSlice controller and `kubectl get pods -w`
see); after a frozen leader, its stale label goes before the new one comes.

A correctness property, asserted over every state the API server held: the watch
(`sidecar.lab.cluster.watch.GroupWatch`) records each event, so a window of a
millisecond counts as much as one of a second. Timings are the benchmark's business
(bench/cluster_failover.py); here only generous bounds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from sidecar.lab.cluster.failover import fail_over, settled, watch_release
from sidecar.lab.cluster.release import ChartRelease
from sidecar.lab.cluster.watch import GroupWatch

ROUNDS = 10
SESSION_TIMEOUT = 2.0  # the release fixture's


@pytest.fixture
def watch(release: ChartRelease) -> Iterator[GroupWatch]:
    with contextlib.closing(watch_release(release)) as group_watch:
        yield group_watch


@pytest.mark.timeout(900)
@pytest.mark.parametrize("action", ["graceful", "step-down"])
def test_graceful_handovers_never_show_two_leader_labels(
    release: ChartRelease, watch: GroupWatch, action: str
) -> None:
    rounds = [fail_over(release, watch, action) for _ in range(ROUNDS)]
    settled(watch, release.replicas)

    assert watch.gaps == 0, "the watch lost history: it cannot vouch for every instant"
    assert [(f.old, f.new, f.doubles) for f in rounds if f.doubles] == []
    assert watch.doubles == []  # between the rounds too (the pods coming back)
    assert all(f.new != f.old for f in rounds)
    assert all(f.seconds["labelled"] < 10 for f in rounds)


@pytest.mark.timeout(300)
def test_a_frozen_leaders_label_goes_before_the_successors_comes(
    release: ChartRelease, watch: GroupWatch
) -> None:
    # SIGSTOP: nothing of the old leader runs, so its label can only be taken off by the
    # successor, which must do so before it labels itself (then SIGCONT: it comes back).
    failover = fail_over(release, watch, "freeze")
    settled(watch, release.replicas)

    assert failover.cleared_first, "the new leader's label came before the stale one went"
    assert watch.doubles == [], "two pods labelled leader, the thawed one included"
    # Not before the frozen leader's lease is over: its session must expire first.
    assert failover.seconds["labelled"] > SESSION_TIMEOUT / 2
    assert failover.seconds["labelled"] < 30
