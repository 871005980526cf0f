"""The own znode of one candidate: its name, its creation, its confirmation, its deletion.

1. Volunteer: create an EPHEMERAL_SEQUENTIAL znode `candidate-<attempt>-<seq>` under the
   election path, in one transaction with its presence marker `<election>.alive/<attempt>`
   (`presence`), pipelined with the creates of the folders (each may exist), the delete
   of the marker of a znode it lost, and the listings of step 2: one round trip instead
   of three (five for a new election). `<attempt>` is a fresh UUID per attempt
   (Curator's protected mode): if the reply to the create is lost, the candidate finds
   its znode again by that prefix and adopts it only if its `ephemeralOwner` is the
   current session; otherwise it deletes it, and its marker.
2. Confirm: a check transaction on the own znode plus `exists` (watch armed), committed by
   a quorum: it proves the znode is still ours (CURATOR-696) and anchors a lease
   (`lease`). A leader's record may ride in the same transaction.
3. Delete: the marker and the znode in one transaction, retried until a deadline; the
   session close that follows a stop deletes them anyway. A znode lost otherwise (deleted
   by hand, `forget`) leaves its marker to the next volunteer, which deletes it once the
   election has made sure the files no longer say leader (`presence` 3.).

Names: `candidate-<32 hex>-<10 digits>`; anything else in the election is not a candidate
and is ignored. The order is the integer sequence, not the string.

Not thread-safe: the election's worker thread is its only caller.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid

from ..state import Record
from ..zk import ConnectionTrouble, NodeStat, NoNode, NotAuthorized, SessionGone, ZkSession

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

CANDIDATE_PREFIX = "candidate-"
CANDIDATE_RE = re.compile(r"^candidate-([0-9a-f]{32})-(-?\d{10})$")
DELETE_RETRY_DELAY = 0.05
MAX_IDENTITY = 253  # a pod name is a DNS subdomain: at most 253 characters
MAX_CANDIDATE_DATA = 4096  # a candidate writes a few dozen bytes; more is someone else's


class Candidate(Record):
    __slots__ = ("attempt", "name", "sequence")

    def __init__(self, name: str, attempt: str, sequence: int) -> None:
        self.name = name
        self.attempt = attempt
        self.sequence = sequence


def parse_candidates(names: list[str]) -> list[Candidate]:
    """Our candidates among `names`, in election order (integer sequence, not string)."""
    found = []
    for name in names:
        match = CANDIDATE_RE.match(name)
        if match:
            found.append(Candidate(name, match.group(1), int(match.group(2))))
    return sorted(found, key=lambda candidate: candidate.sequence)


def candidate_data(identity: str, namespace: str | None) -> bytes:
    return json.dumps({"identity": identity, "pod": identity, "namespace": namespace}).encode()


def identity_in(data: bytes) -> str | None:
    """The identity a candidate wrote into its znode, or None for data that is not a
    candidate's (written over it by another client): not JSON, nested beyond the parser's
    depth, no identity, or one that is no pod name (a string of at most 253 printable
    characters) and must not reach the role files, the pod's annotations or the logs."""
    if len(data) > MAX_CANDIDATE_DATA:
        return None
    try:
        identity = json.loads(data.decode("utf-8"))["identity"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return identity if is_identity(identity) else None


def is_identity(value: object) -> bool:
    """A candidate's identity: a pod name, at most 253 printable characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_IDENTITY and value.isprintable()


def identity_of(data: bytes, fallback: str) -> str:
    identity = identity_in(data)
    return fallback if identity is None else identity


class Candidacy:
    def __init__(
        self, zk: ZkSession, election_path: str, data: bytes, markers: str,
        marker_data: Callable[[], bytes],
    ) -> None:
        self.zk = zk
        self.path = election_path
        self.data = data
        self.markers = markers  # the folder of the presence markers (`presence`)
        self.marker_data = marker_data
        self.node: str | None = None  # full path of the own znode
        self.released: list[str] = []  # markers of znodes lost, for the next volunteer
        self.marker_listing: list[str] | None = None  # listed with the last volunteer
        self.czxid: int | None = None  # its creation zxid: the epoch when it leads
        self.session: int | None = None  # the session it was created in
        self.attempt_in_doubt: str | None = None  # a create whose reply was lost

    @property
    def name(self) -> str:
        assert self.node is not None
        return self.node.rsplit("/", 1)[1]

    def of_current_session(self) -> bool:
        return self.session is not None and self.session == self.zk.session_id

    def marker(self, attempt: str | None = None) -> str:
        """The presence marker of `attempt`, by default of the own znode."""
        if attempt is None:
            match = CANDIDATE_RE.match(self.name)
            assert match is not None
            attempt = match.group(1)
        return f"{self.markers}/{attempt}"

    def forget(self) -> None:
        """The znode is gone (or was never ours): the next step volunteers again, and its
        marker goes with that volunteer's batch (`presence` 3.)."""
        if self.node is not None:
            marker = self.marker()
            if marker not in self.released:
                self.released.append(marker)
        self.node = None

    def session_lost(self) -> None:
        self.attempt_in_doubt = None
        self.released.clear()  # the expiry deleted them

    def session_renewed(self) -> None:
        """Connected again: a znode created in an expired session was deleted by the
        server. A znode created in the *new* session (a race with LOST) is kept."""
        session = self.zk.session_id
        if self.node is not None and session is not None and self.session != session:
            self.node = None
            self.attempt_in_doubt = None
            self.released.clear()

    def volunteer(self) -> list[str] | None:
        """Step 1, with protected-mode recovery of a create whose reply was lost. Returns
        the election's children as listed right after the create, in the same round trip
        (step 2's listing), or None when the caller must list."""
        if self.attempt_in_doubt is not None:
            self.zk.ensure_path(self.path)
            adopted = self.recover(self.attempt_in_doubt)
            if adopted is not None:
                self.attempt_in_doubt = None
                self.session = self.zk.session_id
                self.node = adopted
                self.marker_listing = None
                return None
        attempt = self.attempt_in_doubt or uuid.uuid4().hex
        stale = list(self.released)
        if self.attempt_in_doubt is not None:
            stale.append(self.marker(attempt))  # a pair that never committed leaves none
        self.attempt_in_doubt = attempt
        session = self.zk.require_session()
        prefix = f"{self.path}/{CANDIDATE_PREFIX}{attempt}-"
        marker = (self.marker(attempt), self.marker_data())
        try:
            node, self.czxid, listing, self.marker_listing = self.zk.create_listed(
                self.path, prefix, self.data, marker, tuple(stale)
            )
        except NoNode:  # a folder could not be made
            self.zk.ensure_path(self.path)  # raises what stops it, if it still does
            self.zk.ensure_path(self.markers)
            for path in stale:
                self._delete_quietly(path)
            node, self.czxid = self.zk.create_pair(marker, prefix, self.data)
            listing = self.marker_listing = None
        self.released.clear()
        self.attempt_in_doubt = None
        self.session = session
        self.node = node
        log.info("volunteered as %s", node)
        return listing

    def release_lost(self) -> None:
        """Delete the markers of znodes lost (`forget`) now rather than at the next
        volunteer: the caller has made sure the files no longer say leader."""
        while self.released:
            self._delete_quietly(self.released[0])
            self.released.pop(0)

    def _delete_quietly(self, path: str) -> None:
        with contextlib.suppress(NoNode):
            self.zk.delete(path)

    def recover(self, attempt: str) -> str | None:
        """Find the znode of an attempt whose create reply was lost; adopt or delete it."""
        session = self.zk.require_session()
        for candidate in parse_candidates(self.zk.children(self.path)):
            if candidate.attempt != attempt:
                continue
            node = f"{self.path}/{candidate.name}"
            stat = self.zk.stat(node)
            if stat is not None and stat.ephemeral_owner == session:
                log.info("adopted %s after a lost create reply", node)
                self.czxid = stat.czxid
                return node
            try:
                self.zk.delete_pair(self.marker(attempt), node)
                log.warning("deleted orphan %s of an earlier session", node)
            except NoNode:
                pass
        return None

    def confirm(
        self, timeout: float | None = None, also_set: tuple[str, bytes] | None = None
    ) -> NodeStat | None:
        """Step 2: the quorum-committed round trip on the own znode (also re-arms its
        watch). None if the znode is gone or not this session's. NoNode if `also_set`
        names a node that does not exist."""
        assert self.node is not None
        stat, session = self.zk.confirmed_stat(self.node, timeout, also_set)
        if stat is None or stat.ephemeral_owner != session:
            return None
        self.czxid = stat.czxid
        return stat

    def find_lost_create(self) -> None:
        """Leaving with a create in doubt: adopt its znode, if any, so that it is deleted
        too (it would block the election for as long as this process lives)."""
        if self.node is None and self.attempt_in_doubt is not None:
            attempt, self.attempt_in_doubt = self.attempt_in_doubt, None
            self.node = self.recover(attempt)

    def delete(self, deadline: float) -> None:
        """Step 3: delete the own marker and znode, retrying until the deadline."""
        node = self.node
        if node is None:
            return
        marker = self.marker()
        self.node = None
        while True:
            try:
                self.zk.delete_pair(marker, node, timeout=max(0.05, deadline - time.monotonic()))
                log.info("deleted own znode %s", node)
                return
            except (NoNode, SessionGone):
                return
            except (ConnectionTrouble, NotAuthorized) as error:
                if time.monotonic() >= deadline:
                    log.warning("could not delete %s before the deadline: %s", node, error)
                    self.released.append(marker)
                    return
                time.sleep(DELETE_RETRY_DELAY)
