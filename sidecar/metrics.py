"""Prometheus metrics of one sidecar, in a registry of its own.

A registry per sidecar (not prometheus-client's global one) lets tests and the demo run
several sidecars in one process without collisions. Names follow client-go where a
dashboard written for Kubernetes' own leader election would look for them
(`leader_election_master_status{name=...}`); the rest carry the `leader_sidecar_` prefix.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .state import Role, RoleStatus, ZkState

PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, election: str) -> None:
        self.election = election
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.master_status = Gauge(
            "leader_election_master_status",
            "1 while this candidate is the leader, 0 otherwise (client-go compatible)",
            ["name"], registry=r,
        )
        self.role = Gauge(
            "leader_sidecar_role", "1 for the role this candidate holds now", ["role"], registry=r
        )
        self.epoch = Gauge(
            "leader_sidecar_epoch", "epoch (czxid of the leader's znode) of the current leader",
            registry=r,
        )
        self.transitions = Counter(
            "leader_sidecar_leader_transitions",
            "times this candidate became leader or stopped being leader", registry=r,
        )
        self.zk_state = Gauge(
            "leader_sidecar_zk_session_state", "1 for the ZooKeeper session state now",
            ["state"], registry=r,
        )
        self.lease_remaining = Gauge(
            "leader_sidecar_lease_expiry_timestamp_seconds",
            "wall-clock Unix time at which the leader's lease runs out (0 if not leader)",
            registry=r,
        )
        self.publish_seconds = Histogram(
            "leader_sidecar_publish_seconds",
            "time from the election's verdict to the publisher having written it",
            ["publisher"], buckets=PUBLISH_BUCKETS, registry=r,
        )
        self.publish_errors = Counter(
            "leader_sidecar_publish_errors",
            "failed attempts to publish the role, by publisher and reason",
            ["publisher", "reason"], registry=r,
        )
        self.label_in_sync = Gauge(
            "leader_sidecar_label_in_sync",
            "1 when the pod's role label matches the election's verdict", registry=r,
        )
        self.watch_wakeups = Counter(
            "leader_sidecar_watch_wakeups",
            "re-checks caused by the predecessor's watch (one candidate per leader change)",
            registry=r,
        )
        self.session_timeout = Gauge(
            "leader_sidecar_zk_negotiated_session_timeout_seconds",
            "session timeout the ZooKeeper server granted", registry=r,
        )
        self._was_leader = False
        self.observe(RoleStatus(election=election, identity=""))

    def observe(self, status: RoleStatus) -> None:
        is_leader = status.role is Role.LEADER
        self.master_status.labels(name=self.election).set(1 if is_leader else 0)
        for role in Role:
            self.role.labels(role=role.value).set(1 if status.role is role else 0)
        for state in ZkState:
            self.zk_state.labels(state=state.value).set(1 if status.zk is state else 0)
        self.epoch.set(status.epoch or 0)
        self.lease_remaining.set(
            status.lease_expires.timestamp() if status.lease_expires is not None else 0
        )
        if is_leader != self._was_leader:
            self.transitions.inc()
            self._was_leader = is_leader

    def render(self) -> bytes:
        return generate_latest(self.registry)
