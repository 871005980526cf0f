"""Prometheus metrics of one sidecar, in a registry of its own.

A registry per sidecar (not prometheus-client's global one) lets tests and the demo run
several sidecars in one process without collisions. Names follow client-go where a
dashboard written for Kubernetes' own leader election would look for them
(`leader_election_master_status{name=...}`); the rest carry the `leader_sidecar_` prefix.

The values live in plain Python and become Prometheus families only when scraped (a
custom collector, prometheus-client's documented pattern for values kept elsewhere).
prometheus-client is imported at the first scrape, not at start-up: importing it loads its
HTTP, WSGI and push-gateway code, about 40 ms of CPU that would otherwise delay the first
election on a busy node. Every method is thread-safe and never blocks on I/O.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

from .state import Role, RoleStatus, ZkState

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from typing import Any

    from prometheus_client import CollectorRegistry

PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self, bound_text: Any) -> list[tuple[str, float]]:
        buckets, running = [], 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            buckets.append((bound_text(bound), float(running)))
        return buckets


class Metrics:
    def __init__(self, election: str) -> None:
        self.election = election
        self._lock = threading.Lock()
        self._status = RoleStatus(election=election, identity="")
        self._was_leader = False
        self._transitions = 0
        self._label_in_sync = 0.0
        self._wakeups = 0
        self._session_timeout = 0.0
        self._publish: dict[str, _Histogram] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._registry: CollectorRegistry | None = None

    # -- what happened (any thread) ------------------------------------------------------

    def observe(self, status: RoleStatus) -> None:
        """The status the role files now show; counts a change of leadership."""
        with self._lock:
            self._status = status
            is_leader = status.role is Role.LEADER
            if is_leader != self._was_leader:
                self._transitions += 1
                self._was_leader = is_leader

    def label_in_sync(self, in_sync: bool) -> None:
        with self._lock:
            self._label_in_sync = 1.0 if in_sync else 0.0

    def published(self, publisher: str, seconds: float) -> None:
        with self._lock:
            self._publish.setdefault(publisher, _Histogram(PUBLISH_BUCKETS)).observe(seconds)

    def publish_failed(self, publisher: str, reason: str) -> None:
        with self._lock:
            self._errors[(publisher, reason)] = self._errors.get((publisher, reason), 0) + 1

    def woken(self) -> None:
        """The predecessor's watch woke this candidate."""
        with self._lock:
            self._wakeups += 1

    def session_timeout_granted(self, seconds: float) -> None:
        with self._lock:
            self._session_timeout = seconds

    # -- the scrape ----------------------------------------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry(auto_describe=True)
            registry.register(self)  # calls collect(): not under the lock
            with self._lock:
                if self._registry is None:  # a concurrent first scrape may have won
                    self._registry = registry
        return self._registry

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def collect(self) -> Iterator[Any]:
        """prometheus-client's collector protocol: the families, from one consistent copy."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.utils import floatToGoString

        with self._lock:
            status = self._status
            transitions, wakeups = self._transitions, self._wakeups
            in_sync, session_timeout = self._label_in_sync, self._session_timeout
            publish = {
                name: (h.cumulative(floatToGoString), h.total) for name, h in self._publish.items()
            }
            errors = dict(self._errors)

        master = GaugeMetricFamily(
            "leader_election_master_status",
            "1 while this candidate is the leader, 0 otherwise (client-go compatible)",
            labels=["name"],
        )
        master.add_metric([self.election], 1 if status.role is Role.LEADER else 0)
        yield master
        role = GaugeMetricFamily(
            "leader_sidecar_role", "1 for the role this candidate holds now", labels=["role"]
        )
        for each in Role:
            role.add_metric([each.value], 1 if status.role is each else 0)
        yield role
        yield GaugeMetricFamily(
            "leader_sidecar_epoch", "epoch (czxid of the leader's znode) of the current leader",
            value=status.epoch or 0,
        )
        yield CounterMetricFamily(
            "leader_sidecar_leader_transitions",
            "times this candidate became leader or stopped being leader", value=transitions,
        )
        zk_state = GaugeMetricFamily(
            "leader_sidecar_zk_session_state", "1 for the ZooKeeper session state now",
            labels=["state"],
        )
        for state in ZkState:
            zk_state.add_metric([state.value], 1 if status.zk is state else 0)
        yield zk_state
        yield GaugeMetricFamily(
            "leader_sidecar_lease_expiry_timestamp_seconds",
            "wall-clock Unix time at which the leader's lease runs out (0 if not leader)",
            value=status.lease_expires.timestamp() if status.lease_expires is not None else 0,
        )
        histogram = HistogramMetricFamily(
            "leader_sidecar_publish_seconds",
            "time from the election's verdict to the publisher having written it",
            labels=["publisher"],
        )
        for name, (buckets, total) in sorted(publish.items()):
            histogram.add_metric([name], buckets, sum_value=total)
        yield histogram
        failures = CounterMetricFamily(
            "leader_sidecar_publish_errors",
            "failed attempts to publish the role, by publisher and reason",
            labels=["publisher", "reason"],
        )
        for (name, reason), count in sorted(errors.items()):
            failures.add_metric([name, reason], count)
        yield failures
        yield GaugeMetricFamily(
            "leader_sidecar_label_in_sync",
            "1 when the pod's role label matches the election's verdict", value=in_sync,
        )
        yield CounterMetricFamily(
            "leader_sidecar_watch_wakeups",
            "re-checks caused by the predecessor's watch (one candidate per leader change)",
            value=wakeups,
        )
        yield GaugeMetricFamily(
            "leader_sidecar_zk_negotiated_session_timeout_seconds",
            "session timeout the ZooKeeper server granted", value=session_timeout,
        )
