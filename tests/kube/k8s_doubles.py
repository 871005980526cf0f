"""Test doubles of OUR protocols (never of the Kubernetes API: that is the emulator)."""

from __future__ import annotations

import datetime as dt
import threading

from sidecar.k8s import KubernetesPublisher
from sidecar.state import Role, RoleStatus, ZkState

ELECTION = "demo"


LEASE = dt.timedelta(hours=1)  # a leader's status always carries its lease (the board's)


def status(
    identity: str, role: Role, leader: str | None = None, epoch: int | None = None
) -> RoleStatus:
    lease_expires = None
    if role is Role.LEADER:
        leader = identity
        lease_expires = dt.datetime.now(dt.UTC) + LEASE
    return RoleStatus(
        election=ELECTION,
        identity=identity,
        role=role,
        leader=leader,
        epoch=epoch,
        lease_expires=lease_expires,
        zk=ZkState.CONNECTED,
    )


class Sync:
    """Records `on_label_sync` calls."""

    def __init__(self) -> None:
        self.calls: list[bool] = []
        self._lock = threading.Lock()

    def __call__(self, value: bool) -> None:
        with self._lock:
            self.calls.append(value)

    @property
    def last(self) -> bool | None:
        with self._lock:
            return self.calls[-1] if self.calls else None


class FakeControl:
    """A stand-in for the election behind OUR `ElectionControl` protocol (not a fake API)."""

    def __init__(self, initial: RoleStatus) -> None:
        self.status = initial
        self.step_downs = 0
        self.leaves = 0
        self.publisher: KubernetesPublisher | None = None

    def current(self) -> RoleStatus:
        return self.status

    def step_down(self) -> None:
        self.step_downs += 1
        follower = self.status.replace(role=Role.FOLLOWER, leader=None)
        self.set(follower)

    def leave(self) -> None:
        self.leaves += 1
        self.set(self.status.replace(role=Role.UNKNOWN))

    def set(self, new: RoleStatus) -> None:
        """What the runner does on a verdict: remember it and publish it."""
        self.status = new
        if self.publisher is not None:
            self.publisher.publish(new)


class RacingControl(FakeControl):
    """The election's next verdict is published just after the operator read `current()`
    (the status board runs on its own thread): `then(status)` arms it for the next read."""

    def __init__(self, initial: RoleStatus) -> None:
        super().__init__(initial)
        self._next: RoleStatus | None = None

    def then(self, new: RoleStatus) -> None:
        self._next = new

    def current(self) -> RoleStatus:
        seen = self.status
        if self._next is not None:
            new, self._next = self._next, None
            self.set(new)
        return seen
