"""Steps 5 and 6 of the election: the follower's side of one candidate.

5. Watch only the immediate predecessor (no herd). If it vanished between the listing and
   the watch, or belongs to no session (a ghost, `roster`), the election lists again;
   never a second znode. The heir (whose predecessor is first) confirms its own znode,
   which starts its anchor (`lease`, "The heir"), and watches its predecessor's presence
   marker (`presence` 5.); any other follower watches its own znode.
6. Learn who leads from the leader record (`record`): one notification and two small
   reads per change (the record, and the candidate it names, which must be live). A
   record that names the predecessor as leader makes the election list again, once: a
   listing of its own, never the record alone, makes a candidate the heir.

Between changes the heir renews its anchor every `lease.renew_interval`, as a leader
renews its lease; any other follower only looks every call timeout whether its watches
are still armed, with no request while they are.

Guaranteed: a follower never goes back to an older leader through the record. Not
guaranteed: that the leader it names is still alive (see `record`).

Not thread-safe: the election's worker thread is its only caller.
"""

from __future__ import annotations

import logging
import time

from ..board import StatusBoard
from ..state import Role
from ..zk import NodeStat, NoNode, ZkSession
from . import lease
from .candidacy import Candidacy, identity_in
from .presence import Presence
from .record import LeaderNews
from .roster import Roster
from .standing import Standing
from .worker import Worker

log = logging.getLogger(__name__)


class Follower:
    """This candidate's steps while another candidate is ahead of it."""

    def __init__(
        self,
        board: StatusBoard,
        zk: ZkSession,
        election_path: str,
        candidacy: Candidacy,
        news: LeaderNews,
        roster: Roster,
        standing: Standing,
        worker: Worker,
        presence: Presence,
    ) -> None:
        self.board = board
        self.zk = zk
        self.path = election_path
        self.candidacy = candidacy
        self.news = news
        self.roster = roster
        self.standing = standing
        self.worker = worker
        self.presence = presence

    def follow(self, token: int, predecessor: str, first: str) -> bool:
        """Step 5: watch the immediate predecessor only; publish who leads."""
        assert self.candidacy.node is not None
        stat = self.zk.stat(predecessor, watch=True)
        if stat is None:
            return False  # vanished between listing and watching: list again
        if stat.ephemeral_owner == 0:
            self.roster.ghost(predecessor.rsplit("/", 1)[1])
            return False  # no candidate: list again without it
        standing = self.standing
        standing.predecessor = predecessor
        standing.heir = predecessor == first
        own: NodeStat | None
        if standing.heir:
            own = self.candidacy.confirm()
            self.presence.watch_predecessor(predecessor.rsplit("/", 1)[1])
        else:
            own = self.zk.stat(self.candidacy.node, watch=True)
            self.presence.forget_predecessor()
        if own is None:
            self.candidacy.forget()
            return False
        leader = self._leader_named(first)
        if leader is None:
            return False
        standing.watch_armed = True
        standing.leading = False
        self.board.verdict(token, Role.FOLLOWER, leader[1], leader[2])
        self.worker.granted()
        self.schedule_tick()
        return True

    def schedule_tick(self) -> None:
        # The heir renews its anchor as often as a leader renews its lease; the others
        # only look whether their watches are still armed.
        interval = lease.renew_interval(self.zk.call_timeout) if self.standing.heir else (
            self.zk.call_timeout
        )
        self.worker.next_tick = time.monotonic() + interval

    def _leader_named(self, first: str) -> tuple[str, str, int] | None:
        """Who leads, for a follower: the record if it names `first`, else `first`'s data."""
        standing = self.standing
        if not self.news.watch_armed:
            record = self.news.read()
            if record is not None and f"{self.path}/{record.node}" == first:
                standing.last_leader = (first, record.identity, record.epoch)
        if standing.last_leader is not None and standing.last_leader[0] == first:
            return standing.last_leader
        try:
            data, stat = self.zk.get(first)
        except NoNode:
            return None
        name = first.rsplit("/", 1)[1]
        identity = identity_in(data)
        if identity is None:
            log.warning("leader's znode %s holds no candidate data (%d bytes, written by another "
                        "client?); naming the leader by its znode", first, len(data))
            identity = name
        standing.last_leader = (first, identity, stat.czxid)
        return standing.last_leader

    def take_record(self) -> bool:
        """Step 6: a new leader wrote the record; followers show it, its successor is heir.
        True if the record names the predecessor as leader: the caller lists again."""
        token = self.board.token
        standing = self.standing
        if standing.leading or standing.left or self.candidacy.node is None or (
            not self.zk.connected
        ):
            return False
        record = self.news.read()
        if record is None or not standing.watch_armed:
            return False
        shown = self.board.current().epoch
        if shown is not None and record.epoch < shown:
            return False  # never go back to an older leader
        if not self.news.names_live_candidate(record, self.path):
            return False
        leader_node = f"{self.path}/{record.node}"
        standing.last_leader = (leader_node, record.identity, record.epoch)
        self.board.verdict(token, Role.FOLLOWER, record.identity, record.epoch)
        # The heir leads without a listing when its predecessor goes, so it must know
        # that predecessor is first: a listing of its own, never the record alone (which
        # anyone with write access could have forged), makes it the heir.
        return not standing.heir and standing.predecessor == leader_node

    def renew_anchor(self) -> bool:
        """The heir's anchor: a quorum-committed check of its own znode every renewal
        interval, so that its lease is ready when its predecessor goes. True if the own
        znode is gone: the caller lists again."""
        if self.candidacy.confirm() is None:
            self.candidacy.forget()
            self.standing.heir = False
            return True
        self.schedule_tick()
        return False
