"""The election protocol of one candidate: the seed's ZooKeeper recipe, with the edge cases
the best recipes learned.

Protocol (numbered as in `_check`, which runs steps 1-5):

1. Be a candidate: the own znode (`candidacy`), created in protected mode; with
   credentials, only after the ACLs of the election's nodes were found closed to others
   (`guard`: squatting refused).
2. List the children; ignore foreign names and znodes of no session (persistent, made by
   hand); order by the integer sequence (`roster`).
3. If the own znode is missing (deleted by hand, or the parent was deleted), volunteer
   again.
4. If the own znode is first: lead with epoch = its czxid and a lease (see `lease`)
   anchored on the newest quorum-committed request of the session that owns the znode:
   the create itself at a cold start, or the anchor the heir (the candidate right behind
   the leader) keeps while it waits, so that it leads the instant its predecessor's
   deletion arrives (`lease`, "The heir"). If that anchor has too little lease left,
   first confirm the own znode still exists and belongs to this session (CURATOR-696).
   The leader's side, renewals and resignation included, is `leader`.
5. Otherwise watch only the immediate predecessor (no herd). If it vanished between the
   listing and the watch, list again; never create a second znode (`follower`).
6. Followers learn who leads from the leader record (`record`), which the leader writes
   in its next lease renewal and every follower watches: one notification and one small
   read per follower per change, and no periodic listing. A follower whose predecessor
   the record names as leader lists once (the record could be forged): if that
   predecessor is first, it has become the heir and starts its anchor (`follower`).

Where a candidate stands between steps (leading, lease, predecessor, heir, the leader it
knows) is one `Standing`, shared by the leader's and the follower's side.

Threads: every step runs on one worker thread (`worker`). kazoo's listener and watches
only enqueue. The status board carries a connection token: a verdict computed before the
newest session change is dropped, and a SUSPENDED connection demotes a leader at once
through the board, without waiting for the worker (which may be blocked in a request
queued by kazoo).

Guaranteed: at most one candidate is leader with an unexpired lease at any instant, under
crashes, freezes and partitions of candidates and the loss of ZooKeeper servers, as long as
nobody deletes a live leader's znode by hand (ACLs rule that out) and the clock
assumptions in `lease` hold. Not guaranteed: FIFO order after a session is LOST (the
candidate volunteers again at the back of the queue, by design).
"""

from __future__ import annotations

import logging
import time

from ..board import StatusBoard
from ..config import Config
from ..metrics import Metrics
from ..state import Role, ZkState
from ..zk import NoNode, SessionEvent, WatchKind, ZkError, ZkSession, session_for
from . import lease
from .candidacy import Candidacy, candidate_data
from .follower import Follower
from .guard import AclGuard, OpenAcl
from .leader import Leader
from .presence import Presence, marker_data
from .record import LeaderNews
from .roster import Roster
from .standing import Standing
from .worker import ERROR_BACKOFF, Event, Kind, Worker

log = logging.getLogger(__name__)

MAX_RELISTS = 20


class Election:
    """One candidate. `start()` it; `step_down()`, `leave()` and `stop()` from any thread."""

    def __init__(
        self,
        config: Config,
        board: StatusBoard,
        metrics: Metrics | None = None,
        zk: ZkSession | None = None,
    ) -> None:
        """`zk`: a session of this configuration, maybe started already (`cli.cmd_run`
        connects while the sidecar loads); its events reach this election in order."""
        self.config = config
        self.board = board
        self.metrics = metrics
        self.path = config.election_path
        self.zk = zk or session_for(config)
        self.presence = Presence(self.zk, self.path)
        self.candidacy = Candidacy(
            self.zk, self.path, candidate_data(config.identity, config.namespace),
            self.presence.path, lambda: marker_data(self.zk.call_timeout),
        )
        self.news = LeaderNews(self.zk, self.path)
        self.guard = AclGuard(self.zk, self.path)
        self.worker = Worker(self._handle, self._wake_at, self.path)
        # State below is touched by the worker thread only.
        self.standing = Standing()
        self.roster = Roster(self.zk, self.path, self.candidacy)
        self.leader = Leader(
            config, board, self.zk, self.candidacy, self.news, self.standing, self.worker
        )
        self.follower = Follower(
            board, self.zk, self.path, self.candidacy, self.news, self.roster, self.standing,
            self.worker, self.presence,
        )
        self.wakeups = 0  # re-checks caused by a watch: one per leader change, not N-1
        self._granted_checked: float | None = None
        self.zk.attach(self._on_session, self._on_watch)

    @property
    def record_reads(self) -> int:
        """Reads of the leader record after a change: one per change."""
        return self.news.reads

    # -- kazoo callbacks: hand off, never block ----------------------------------------

    def _on_session(self, event: SessionEvent) -> None:
        zk_state = {
            SessionEvent.CONNECTED: ZkState.CONNECTED,
            SessionEvent.SUSPENDED: ZkState.SUSPENDED,
            SessionEvent.LOST: ZkState.LOST,
        }[event]
        self.board.session_changed(zk_state)
        negotiated = self.zk.negotiated_timeout
        if event is SessionEvent.CONNECTED and negotiated:
            self._check_granted(negotiated)
            if self.metrics is not None:
                self.metrics.session_timeout_granted(negotiated)
        self.worker.put(Event(Kind.SESSION, session=event))

    def _on_watch(self, path: str, kind: WatchKind) -> None:
        self.worker.put(Event(Kind.WATCH, path=path, watch=kind))

    # -- control (any thread) ----------------------------------------------------------

    def start(self) -> None:
        lease.check_invariants(self.config.session_timeout)
        self.worker.start()
        self.zk.start()

    def alive(self) -> bool:
        return self.worker.alive()

    def step_down(self) -> None:
        self.worker.put(Event(Kind.STEP_DOWN))

    def leave(self, timeout: float) -> bool:
        """Delete the own znode and stay out of the election. True once done in time."""
        return self.worker.leave(timeout)

    def rejoin(self) -> None:
        self.worker.put(Event(Kind.REJOIN))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker (cancel-and-wait) and close the session, which makes the server
        delete any znode of ours that is left."""
        self.worker.stop(timeout)
        try:
            self.zk.close()
        except Exception:  # closing a broken client must not stop the shutdown
            log.debug("closing the ZooKeeper client failed", exc_info=True)

    # -- the worker thread: events -----------------------------------------------------

    def _check_granted(self, negotiated: float) -> None:
        """The invariants of `lease`, for the timeout the server granted (it may grant
        less than was asked for): logged, once per value, when they fail."""
        if negotiated == self._granted_checked:
            return
        self._granted_checked = negotiated
        try:
            lease.check_invariants(negotiated)
        except lease.LeaseConfigError as error:
            log.error("ZooKeeper granted a %s; leases will be too short to renew in time "
                      "(raise the servers' minSessionTimeout or ask for more)", error)

    def _wake_at(self) -> float | None:
        """The worker wakes at the lease's end while leading, and at the end of a hold
        (`presence` 4.), even with no tick due."""
        if self.standing.leading:
            return self.standing.lease_deadline
        return self.presence.hold_end()

    def _handle(self, event: Event | None) -> None:
        if event is None:
            self._on_tick()
        elif event.kind is Kind.SESSION:
            self._on_session_event(event.session)
        elif event.kind is Kind.WATCH:
            self._on_watch_event(event.path, event.watch)
        elif event.kind is Kind.STEP_DOWN:
            if self.leader.resign():
                self._check()
        elif event.kind is Kind.LEAVE:
            self._leave()
        elif event.kind is Kind.REJOIN:
            self.standing.left = False
            self.board.thaw()
            self._check()

    def _on_session_event(self, event: SessionEvent | None) -> None:
        self.standing.leading = False
        self.standing.watch_armed = False  # kazoo does not re-arm watches after a reconnect
        self.news.watch_armed = False
        if event is SessionEvent.CONNECTED:
            if self.candidacy.node is not None and not self.candidacy.of_current_session():
                self.standing.no_predecessor()
            self.candidacy.session_renewed()
            self._check()
        elif event is SessionEvent.LOST:
            # kazoo opens a new session and we volunteer again, at the back of the queue,
            # when it reports CONNECTED (see above for what is forgotten then).
            self.candidacy.session_lost()
            self.standing.no_predecessor()

    def _on_watch_event(self, path: str, kind: WatchKind | None) -> None:
        if kind is WatchKind.CONNECTION:
            return  # kazoo fires every watch on connection loss; CONNECTED re-lists
        if path == self.news.path:
            self.news.watch_armed = False
            self.news.reads += 1
            self._take_record()
        elif path == self.candidacy.node and kind is WatchKind.DELETED:
            log.warning("own znode %s was deleted; volunteering again", path)
            self.candidacy.forget()
            self.standing.leading = False
            self._check()  # step 1 withdraws the lease before the marker goes
        elif path == self.candidacy.node:
            self._check()  # someone wrote into it and spent the watch: arm it again
        elif path == self.standing.predecessor:
            self.wakeups += 1
            if self.metrics is not None:
                self.metrics.woken()
            led = self.standing.heir and kind is WatchKind.DELETED
            if led and not self.presence.predecessor_left():
                return  # deleted under a live session: its marker's release wakes us
            self._check(predecessor_led=led)
        elif kind is WatchKind.DELETED and self.presence.watches(path) and (
            self.presence.released(path)
        ):
            self._check(predecessor_led=self._heir_released(path))

    def _heir_released(self, marker: str) -> bool:
        """The heir's predecessor, gone while its marker stayed, has now released it."""
        presence = self.presence
        return self.standing.heir and presence.predecessor_gone and marker == (
            presence.predecessor
        )

    def _on_tick(self) -> None:
        now = time.monotonic()
        standing = self.standing
        if self.presence.hold_end() is not None and not self.presence.holding():
            # A hold ran its full time: whoever we held back for has no lease left.
            self._check(predecessor_led=standing.heir and self.presence.predecessor_gone)
            return
        if standing.leading and now >= standing.lease_deadline:
            log.warning("lease ran out without renewal; no longer leader")
            standing.leading = False
            self.board.expire_lease(self.board.token)
            # The session may have lived through it (a stall shorter than kazoo's read
            # timeout): then no session event comes, our znode is still first, and every
            # other candidate waits on it. Only a fresh listing (step 4) makes us lead
            # again; without one the group would have no leader for good.
            standing.watch_armed = False
        if standing.left or not self.zk.connected:
            self.worker.next_tick = now + 1.0
            return
        if standing.leading:
            if self.leader.renew():
                self._check()
        elif self.candidacy.node is None or not standing.watch_armed:
            self._check()
        elif standing.heir:
            if self.follower.renew_anchor():
                self._check()
        else:
            self._refresh()

    # -- protocol steps ----------------------------------------------------------------

    def _check(self, predecessor_led: bool = False) -> None:
        """Steps 2-5: find out where we stand and publish the verdict.

        `predecessor_led`: the znode just deleted was our predecessor *and* first in our
        last listing. Then we are first without listing again: sequence numbers in a parent
        only grow, so no candidate created since can sort before us. (If the parent was
        recreated meanwhile, our own znode went with it, and its deletion reached us
        before this one.) We lead on our anchor if it is fresh, else after a round trip.
        """
        if self.standing.left or not self.zk.connected:
            return
        token = self.board.token
        if predecessor_led and self.candidacy.node is not None and (
            self.leader.lead_on_anchor(token) or self.leader.lead(token)
        ):
            return
        for _ in range(MAX_RELISTS):
            # 1. Be a candidate.
            listing = None
            if self.candidacy.node is None:
                self.standing.leading = False
                if self.board.token != token:
                    return  # a session change is queued; it re-checks with the new state
                if self.candidacy.released and not self._withdraw(token):
                    return
                self._guard(token)
                listing = self.candidacy.volunteer()  # with step 2's listing, usually
            # 2. List, ignoring foreign children, ordered by integer sequence.
            try:
                children = self.zk.children(self.path) if listing is None else listing
            except NoNode:
                self.candidacy.forget()  # the parent was deleted, and our znode with it
                continue
            names = self.roster.candidate_names(children)
            # 3. Own znode gone while the session lives: volunteer again.
            if self.candidacy.name not in names:
                log.warning("own znode %s is gone; volunteering again", self.candidacy.node)
                self.candidacy.forget()
                continue
            position = names.index(self.candidacy.name)
            # 4. First: lead, unless a candidate ahead lost its znode under a live session.
            if position == 0:
                assert self.candidacy.czxid is not None
                markers = self.candidacy.marker_listing if listing is not None else None
                if self.presence.orphans_ahead(names, self.candidacy.czxid, markers):
                    self.standing.no_predecessor()
                    return  # a marker's release, or the hold's end, wakes us
                if self.leader.lead_on_anchor(token, "at once, on its fresh anchor") or (
                    self.leader.lead(token)
                ):
                    return
                continue
            # 5. Otherwise: follow the immediate predecessor.
            predecessor, first = f"{self.path}/{names[position - 1]}", f"{self.path}/{names[0]}"
            if self.follower.follow(token, predecessor, first):
                return
        log.warning("election did not settle after %d listings; retrying", MAX_RELISTS)
        self.worker.next_tick = time.monotonic() + ERROR_BACKOFF

    def _guard(self, token: int) -> None:
        """1a. With credentials: never volunteer on nodes open to others (`guard`). The
        files say `unknown`; the worker logs the one line and retries."""
        try:
            self.guard.verify()
        except OpenAcl:
            self.board.verdict(token, Role.UNKNOWN, None, None)
            raise

    def _withdraw(self, token: int) -> bool:
        """Before the markers of lost znodes go (`presence` 3.): the files must no longer
        say leader. False if a session change came first (it re-checks)."""
        if self.board.current().role is Role.LEADER and not self.board.verdict(
            token, Role.UNKNOWN, None, None
        ):
            return self.board.frozen  # frozen: the files say unknown already
        self.board.wait_demoted(1.0)
        return True

    def _take_record(self) -> None:
        """Step 6, and the listing it asks for when the record names our predecessor."""
        if self.follower.take_record():
            self._check()

    def _refresh(self) -> None:
        """A plain follower's periodic look: no request while its watches are armed."""
        if not self.news.watch_armed:
            self._take_record()
        # Last: a listing above may have made us the heir. Or the leader: then the lease
        # renewal is already scheduled, and a follower's tick would push it past the lease.
        if not self.standing.leading:
            self.follower.schedule_tick()

    def _leave(self) -> None:
        self.standing.left = True
        self.standing.leading = False
        if not self.board.frozen:  # the runner usually froze it already
            self.board.freeze()
            self.board.wait_demoted(1.0)
        deadline = time.monotonic() + self.zk.call_timeout
        try:
            self.candidacy.find_lost_create()
            self.candidacy.release_lost()  # demoted above: the markers may go now
        except ZkError as error:
            log.warning("could not look for a znode of a lost create: %s", error)
        self.leader.delete_own(deadline)
