"""Step 4 of the election and what follows it: the leader's side of one candidate.

1. Lead on an anchor, with no round trip: the newest quorum-committed request of the own
   znode's session (the heir's anchor, or the create of a candidate that lists itself
   first), if at least `lease.margin` of the lease it gives is left.
2. Otherwise lead after a round trip that confirms the own znode still exists and belongs
   to this session (CURATOR-696).
3. Publish the verdict, unless the lease has already run out by then (a stall since the
   anchor: `lease` 4.); write the leader record (`record`) in the next renewal, once the
   own role files say leader (at most `RECORD_AFTER_FILES_AT_MOST` later).
4. Renew the lease every `lease.renew_interval`, the record riding along when due; a
   renewal whose lease ran out before it could be published withdraws the lease.
5. Resign on request: demote first, then delete the own marker and znode.

Guaranteed: the lease published never runs past what `lease` proves (its end is
`min(t_send + T/2, touch + T) - margin`, converted with the wall clock read first), and a
resigning leader's files say it is demoted, or its lease has run out, before its marker
and znode go (`lease`, 6.). Not guaranteed: that a renewal succeeds. When the own znode
is gone or the board moved on (a session change), `renew` returns True, as `resign` does
once it stepped down, and the election lists again.

Not thread-safe: the election's worker thread is its only caller.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from ..board import StatusBoard
from ..config import Config
from ..state import Role
from ..zk import ZkSession
from . import lease
from .candidacy import Candidacy
from .record import LeaderNews, LeaderRecord
from .standing import Standing
from .worker import Worker

log = logging.getLogger(__name__)

RECORD_AFTER_FILES_AT_MOST = 0.05  # seconds a new leader waits for its files before the record


class Leader:
    """This candidate's steps while it is, or is about to be, the leader."""

    def __init__(
        self,
        config: Config,
        board: StatusBoard,
        zk: ZkSession,
        candidacy: Candidacy,
        news: LeaderNews,
        standing: Standing,
        worker: Worker,
    ) -> None:
        self.config = config
        self.board = board
        self.zk = zk
        self.candidacy = candidacy
        self.news = news
        self.standing = standing
        self.worker = worker

    def lead(self, token: int) -> bool:
        """Step 4: confirm the own znode (CURATOR-696), then lead."""
        if self.candidacy.confirm() is None:
            log.warning("own znode %s not ours any more; volunteering again", self.candidacy.node)
            self.candidacy.forget()
            return False
        deadline = self.anchored_deadline()
        if deadline is None or self.candidacy.czxid is None:
            return False
        return self._become_leader(token, self.candidacy.czxid, deadline)

    def lead_on_anchor(self, token: int, how: str = "at once, on the heir's anchor") -> bool:
        """Step 4 with no round trip: the lease comes from the newest quorum-committed request
        of the own znode's session: the heir's anchor (`lease`, "The heir"), or the create
        just made by a candidate that lists itself first. False if that anchor is not fresh
        enough."""
        deadline = self.anchored_deadline()
        timeout = self.zk.negotiated_timeout
        if deadline is None or timeout is None or self.candidacy.czxid is None:
            return False
        if not self.candidacy.of_current_session():
            return False
        if deadline - time.monotonic() < lease.margin(timeout):
            return False
        return self._become_leader(token, self.candidacy.czxid, deadline, how=how)

    def anchored_deadline(self) -> float | None:
        """The lease's end on the newest quorum-committed request of the session (`lease`
        2.), or None before there is one."""
        answered = self.zk.answered_send_time()
        timeout = self.zk.negotiated_timeout
        if answered is None or timeout is None:
            return None
        touch = self.zk.sends.touch(
            self.zk.session_id, answered, lease.forwarded_before(answered, timeout)
        )
        return lease.lease_deadline(answered, timeout, touch)

    def _become_leader(
        self, token: int, epoch: int, deadline: float, how: str = "after a round trip"
    ) -> bool:
        """Publish LEADER with the lease up to `deadline`; False, publishing nothing, if
        that lease has already run out (a stall or a freeze since its anchor: `lease` 4.)."""
        assert self.candidacy.node is not None
        standing = self.standing
        expires = self._publishable(token, deadline, "not leading on it")
        if expires is None:
            return False
        standing.no_predecessor()
        standing.lease_deadline = deadline
        if self.board.verdict(token, Role.LEADER, self.config.identity, epoch, expires):
            if not standing.leading:
                log.info("elected leader with epoch %d %s", epoch, how)
            standing.leading = True
        standing.last_leader = (self.candidacy.node, self.config.identity, epoch)
        self.worker.granted()
        if self.news.written_epoch == epoch:
            self._schedule_renewal()
        else:
            # Write the record now, once the own role files say leader: sent at once, the
            # request would compete with that write for the interpreter, and the news
            # for followers can wait a few milliseconds; the application's cannot.
            self.board.wait_written(RECORD_AFTER_FILES_AT_MOST)
            self.worker.next_tick = time.monotonic()
        return True

    def _schedule_renewal(self) -> None:
        self.worker.next_tick = time.monotonic() + lease.renew_interval(self.zk.call_timeout)

    def renew(self) -> bool:
        """The lease round trip (the record rides along when due); re-arms the own watch.
        True if the lease was not renewed: the caller checks where it stands."""
        token = self.board.token
        assert self.candidacy.czxid is not None
        # An answer after the lease ran out renews nothing: wait no longer than the lease.
        remaining = max(0.05, self.standing.lease_deadline - time.monotonic())
        record = LeaderRecord(self.config.identity, self.candidacy.czxid, self.candidacy.name)
        if self.news.renew_with(self.candidacy, record, remaining) is None:
            self.candidacy.forget()
            self.standing.leading = False
            return True
        deadline = self.anchored_deadline()
        if deadline is not None:
            expires = self._publishable(token, deadline, "no longer leader")
            if expires is None:
                return True
            self.standing.lease_deadline = deadline
            if not self.board.renew(token, expires):
                return True  # the board moved on (session change): re-check now
        self._schedule_renewal()
        return False

    def _publishable(self, token: int, deadline: float, outcome: str) -> dt.datetime | None:
        """`deadline` as wall-clock time (`lease` 4.), or None if that lease has already
        run out (a stall or a freeze since its anchor): then whatever lease the board
        still shows is withdrawn, and nothing is published."""
        expires = lease.monotonic_to_wall(deadline)
        if deadline > time.monotonic():
            return expires
        log.warning("lease on this anchor ran out before it was published (the process "
                    "stalled); %s", outcome)
        self.standing.leading = False
        self.board.expire_lease(token)
        return None

    def resign(self) -> bool:
        """Step down: demote, delete the own znode. True if it did: the caller volunteers
        again, at the back."""
        if not self.standing.leading or self.candidacy.node is None:
            log.info("step-down asked but not leader; nothing to do")
            return False
        token = self.board.token
        self.standing.leading = False
        self.board.verdict(token, Role.UNKNOWN, None, None)
        self.board.wait_demoted(1.0)
        self.delete_own(deadline=time.monotonic() + self.zk.call_timeout)
        log.info("stepped down; volunteering again at the back of the queue")
        return True

    def delete_own(self, deadline: float) -> None:
        """Delete the own znode (a leader demoted first), retrying until `deadline`."""
        self.standing.no_predecessor()
        self.candidacy.delete(deadline)
