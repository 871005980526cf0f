"""The leader record: a small znode beside the election that the leader writes and every
follower watches, so that followers learn who leads within milliseconds of a change.

Why a record of its own: a follower that watched the leader's znode would be woken with
all the others when it goes (the herd), and a follower that listed the election now and
then would learn late and read O(N) names each time. With the record, a leader change
costs each follower one notification and one read of a few dozen bytes, whatever N is,
while the election itself still wakes exactly one candidate (the successor).

Protocol:

1. Path: `<election path>.leader`. A `.` cannot occur in an election name, so the record
   never collides with another election's parent, and it is not a child of the election
   (which holds only candidates).
2. The leader writes `{"identity", "epoch", "node"}` in one transaction together with a
   check of its own znode (`ZkSession.confirmed_stat(..., also_set=...)`): the write
   commits only while that znode exists, that is while it is first in the queue. A
   successor leads only after its predecessor's znode is gone, so an older leader's write
   can never land after a newer leader's: the epochs in the record strictly increase.
3. That transaction is a quorum-committed request of the leader's session, so it is also
   a lease renewal (`lease`); the record costs no request of its own.
4. Followers read it with a watch (`ZkSession.get_watched`) and read it again on every
   notification. A record whose epoch is older than what a follower already shows is
   ignored.
5. A record's epoch is the czxid of a znode that existed when the record was written, so
   it is older than the record's own write (its mzxid). A record that claims a newer
   epoch was not written by a leader (someone wrote over it by hand) and reads as "no
   record": it would otherwise pin every follower to a leader from the future.
6. A follower takes a record only if it names a live candidate of the election: a
   `candidate-` znode that exists, belongs to a session, and whose czxid is the record's
   epoch (`LeaderNews.names_live_candidate`, one small read). A record naming anything
   else (a departed leader, a made-up name) is ignored as in 5.

Guaranteed: a follower never goes back to an older leader through the record. Not
guaranteed: that the named leader is still alive (a crashed leader stays named until its
successor writes, about one session timeout later), or that a follower sees every
intermediate record of a burst of changes. Data that is not a valid record (empty,
malformed, oversized, or from the future: 5.) reads as "no record": followers then name
the first candidate of their own listing, as before the record existed. A well-formed
record with a plausible epoch that someone else wrote (ACLs, `--zk-auth`, rule that out)
can mislead followers' *naming* of the leader until their next listing, never a role: a
candidate becomes the heir only after a listing of its own shows its predecessor first.
"""

from __future__ import annotations

import json
import logging

from ..state import Record
from ..zk import NodeStat, NoNode, NotAuthorized, ZkSession
from .candidacy import CANDIDATE_RE, Candidacy, is_identity

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".leader"
MAX_RECORD_BYTES = 4096


def record_path(election_path: str) -> str:
    return f"{election_path}{RECORD_SUFFIX}"


class LeaderRecord(Record):
    __slots__ = ("epoch", "identity", "node")

    def __init__(self, identity: str, epoch: int, node: str) -> None:
        self.identity = identity
        self.epoch = epoch
        self.node = node  # the leader's candidate znode name (last path component)

    def encode(self) -> bytes:
        return json.dumps(
            {"identity": self.identity, "epoch": self.epoch, "node": self.node},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> LeaderRecord | None:
        """The record in `data`, or None for anything that is not one."""
        if not data or len(data) > MAX_RECORD_BYTES:
            return None
        try:
            document = json.loads(data.decode("utf-8"))
            identity, epoch, node = document["identity"], document["epoch"], document["node"]
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
        if not (is_identity(identity) and isinstance(node, str) and CANDIDATE_RE.match(node)):
            return None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= 0:
            return None
        return cls(identity, epoch, node)


class LeaderNews:
    """The record as one candidate uses it: the leader's write, riding in its lease
    renewal (2., 3.), and a follower's watched read (4.). Worker thread only."""

    def __init__(self, zk: ZkSession, election_path: str) -> None:
        self.zk = zk
        self.path = record_path(election_path)
        self.written_epoch: int | None = None  # the epoch this candidate last wrote
        self.watch_armed = False
        self.reads = 0  # reads after a notification: one per change
        self._ignored: int | None = None  # the write (mzxid) last logged as not a record
        self._ignored_epoch: int | None = None  # the record last logged as naming no one

    def renew_with(
        self, candidacy: Candidacy, record: LeaderRecord, timeout: float | None
    ) -> NodeStat | None:
        """The leader's lease round trip (`Candidacy.confirm`), with the record in the same
        transaction while this epoch has not written it yet."""
        due = None if self.written_epoch == record.epoch else (self.path, record.encode())
        try:
            stat = candidacy.confirm(timeout, due)
        except NoNode:  # the first leader of this election: there is no record yet
            self.zk.ensure_path(self.path)
            stat = candidacy.confirm(timeout, due)
        except NotAuthorized as error:
            if due is None:
                raise
            log.error("cannot write the leader record %s: %s; followers will learn the "
                      "leader later", self.path, error)
            self.written_epoch = record.epoch
            return candidacy.confirm(timeout)
        if stat is not None and due is not None:
            self.written_epoch = record.epoch
        return stat

    def read(self) -> LeaderRecord | None:
        """The record, with a watch armed for its next change (5.)."""
        found = self.zk.get_watched(self.path)
        self.watch_armed = True
        if found is None:
            return None
        data, stat = found
        record = LeaderRecord.decode(data)
        if record is not None and record.epoch < stat.mzxid:
            return record
        if data and stat.mzxid != self._ignored:  # once per foreign write, not per read
            self._ignored = stat.mzxid
            log.warning("leader record %s holds no record a leader wrote (%d bytes, epoch %s, "
                        "written at zxid %d); ignored", self.path, len(data),
                        None if record is None else record.epoch, stat.mzxid)
        return None

    def names_live_candidate(self, record: LeaderRecord, election_path: str) -> bool:
        """6.: the record's node is a candidate of a live session, made at its epoch."""
        stat = self.zk.stat(f"{election_path}/{record.node}")
        live = stat is not None and stat.ephemeral_owner != 0 and stat.czxid == record.epoch
        if not live and record.epoch != self._ignored_epoch:  # once per record, not per read
            self._ignored_epoch = record.epoch
            log.warning("leader record %s names %s (epoch %d), which is no live candidate of "
                        "the election; ignored", self.path, record.node, record.epoch)
        return live
