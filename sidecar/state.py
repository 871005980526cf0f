"""The role a candidate holds, as the election hands it to publishers.

This module is the seam between the election (which produces `RoleStatus` values) and the
publishers (role files, HTTP, metrics, Kubernetes) which consume them. It imports nothing
from the rest of the package, so every layer may import it.

Guaranteed: a `RoleStatus` is immutable; `to_json()` gives exactly the `status.json`
document of DESIGN.md (plus the optional `label_in_sync` key that the Kubernetes publisher
fills in). Not guaranteed: that a status is still current when a publisher reads it; a
publisher that falls behind must publish the newest status, never replay older ones.
"""

from __future__ import annotations

import datetime as dt
import enum
import json

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from typing import Any, Protocol, TypeVar

    _R = TypeVar("_R", bound="Record")


class Role(enum.StrEnum):
    LEADER = "leader"
    FOLLOWER = "follower"
    UNKNOWN = "unknown"


class ZkState(enum.StrEnum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"


def isoformat_z(instant: dt.datetime | None) -> str | None:
    """UTC instant as `2026-11-24T12:00:00.123456Z` (microseconds always shown)."""
    if instant is None:
        return None
    utc = instant.astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_isoformat_z(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Record:
    """A value of named fields (its `__slots__`), compared, hashed, shown and copied by
    them: what a frozen dataclass or a NamedTuple gives, without their cost at start-up.
    A dataclass compiles its methods when its module loads (about 1 ms of CPU each) and a
    NamedTuple needs `typing` (4 % of a cold start); a sidecar starts in a crowd of pods,
    and its first election waits for that CPU. Treat a record as immutable: `replace`."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and (
            other._values() == self._values()
        )

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        pairs = zip(self.__slots__, self._values(), strict=True)
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in pairs)})"

    def replace(self: _R, **changes: Any) -> _R:
        values = dict(zip(self.__slots__, self._values(), strict=True))
        values.update(changes)
        return type(self)(**values)


class RoleStatus(Record):
    """One verdict of the election for this candidate.

    `epoch` is the czxid of the current leader's znode (None while no leader is known);
    `lease_expires` is set only on the leader: the wall-clock instant until which no other
    candidate can have become leader. `since` is when this candidate entered `role`.
    """

    __slots__ = (
        "election",
        "epoch",
        "identity",
        "label_in_sync",
        "leader",
        "lease_expires",
        "role",
        "since",
        "zk",
    )

    def __init__(
        self,
        election: str,
        identity: str,
        role: Role = Role.UNKNOWN,
        leader: str | None = None,
        epoch: int | None = None,
        since: dt.datetime | None = None,
        lease_expires: dt.datetime | None = None,
        zk: ZkState = ZkState.LOST,
        label_in_sync: bool | None = None,
    ) -> None:
        self.election = election
        self.identity = identity
        self.role = role
        self.leader = leader
        self.epoch = epoch
        self.since = since
        self.lease_expires = lease_expires
        self.zk = zk
        self.label_in_sync = label_in_sync

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "election": self.election,
            "identity": self.identity,
            "role": self.role.value,
            "leader": self.leader,
            "epoch": self.epoch,
            "since": isoformat_z(self.since),
            "lease_expires": isoformat_z(self.lease_expires),
            "zk": self.zk.value,
        }
        if self.label_in_sync is not None:
            document["label_in_sync"] = self.label_in_sync
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RoleStatus:
        return cls(
            election=document["election"],
            identity=document["identity"],
            role=Role(document["role"]),
            leader=document.get("leader"),
            epoch=document.get("epoch"),
            since=parse_isoformat_z(document.get("since")),
            lease_expires=parse_isoformat_z(document.get("lease_expires")),
            zk=ZkState(document.get("zk", "lost")),
            label_in_sync=document.get("label_in_sync"),
        )

    def holds_lease(self, now: dt.datetime) -> bool:
        """What an application must check before acting as leader."""
        return (
            self.role is Role.LEADER
            and self.lease_expires is not None
            and now < self.lease_expires
        )


if TYPE_CHECKING:  # the contracts below are for the type checker; nothing subclasses them

    class Publisher(Protocol):
        """Consumes role changes. `publish` must return at once and never raise: a publisher
        that talks to something slow hands the status to its own worker and coalesces."""

        def publish(self, status: RoleStatus) -> None: ...


    class ElectionControl(Protocol):
        """What publishers and the operator may ask of the running election."""

        def current(self) -> RoleStatus: ...

        def step_down(self) -> None:
            """Resign if leader and volunteer again at the back of the queue (non-blocking)."""

        def leave(self) -> None:
            """Leave the election for good without exiting (preStop hook; non-blocking)."""
