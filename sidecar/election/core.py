"""The election protocol of one candidate: the seed's ZooKeeper recipe, with the edge cases
the best recipes learned.

Protocol (numbered as in `_check`):

1. Be a candidate: the own znode (`candidacy`), created in protected mode.
2. List the children; ignore foreign names and znodes of no session (persistent, made by
   hand); order by the integer sequence.
3. If the own znode is missing (deleted by hand, or the parent was deleted), volunteer
   again.
4. If the own znode is first: lead with epoch = its czxid and a lease (see `lease`)
   anchored on the newest quorum-committed request of the session that owns the znode:
   the create itself at a cold start, or the anchor the heir (the candidate right behind
   the leader) keeps while it waits, so that it leads the instant its predecessor's
   deletion arrives (`lease`, "The heir"). If that anchor has too little lease left,
   first confirm the own znode still exists and belongs to this session (CURATOR-696).
5. Otherwise watch only the immediate predecessor (no herd). If it vanished between the
   listing and the watch, list again; never create a second znode.
6. Followers learn who leads from the leader record (`record`), which the leader writes
   in its next lease renewal and every follower watches: one notification and one small
   read per follower per change, and no periodic listing. A follower whose predecessor
   the record names as leader lists once (the record could be forged): if that
   predecessor is first, it has become the heir and starts its anchor.

Threads: every step runs on one worker thread. kazoo's listener and watches only enqueue.
The status board carries a connection token: a verdict computed before the newest session
change is dropped, and a SUSPENDED connection demotes a leader at once through the board,
without waiting for the worker (which may be blocked in a request queued by kazoo).

Guaranteed: at most one candidate is leader with an unexpired lease at any instant, under
crashes, freezes and partitions of candidates and the loss of ZooKeeper servers, as long as
nobody deletes a live leader's znode by hand (ACLs rule that out) and the clock
assumptions in `lease` hold. Not guaranteed: FIFO order after a session is LOST (the
candidate volunteers again at the back of the queue, by design).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import queue
import threading
import time

from ..board import StatusBoard
from ..config import Config
from ..metrics import Metrics
from ..state import Role, ZkState
from ..zk import NodeStat, NoNode, NotAuthorized, SessionEvent, WatchKind, ZkError, ZkSession
from . import lease
from .candidacy import Candidacy, Candidate, candidate_data, identity_in, parse_candidates
from .record import LeaderNews, LeaderRecord

log = logging.getLogger(__name__)

MAX_RELISTS = 20
ERROR_BACKOFF = 0.2
REFUSED_BACKOFF = 1.0  # NoAuth: only a change of an ACL or of --zk-auth helps
RECORD_AFTER_FILES_AT_MOST = 0.05  # seconds a new leader waits for its files before the record


class Kind(enum.Enum):
    SESSION = "session"
    WATCH = "watch"
    STEP_DOWN = "step-down"
    LEAVE = "leave"
    REJOIN = "rejoin"
    STOP = "stop"


@dataclasses.dataclass
class Event:
    kind: Kind
    session: SessionEvent | None = None
    path: str = ""
    watch: WatchKind | None = None
    done: threading.Event | None = None


class Election:
    """One candidate. `start()` it; `step_down()`, `leave()` and `stop()` from any thread."""

    def __init__(self, config: Config, board: StatusBoard, metrics: Metrics | None = None) -> None:
        self.config = config
        self.board = board
        self.metrics = metrics
        self.path = config.election_path
        self.zk = ZkSession(
            config.zk_hosts,
            config.session_timeout,
            on_session=self._on_session,
            on_watch=self._on_watch,
            zk_auth=config.zk_auth,
        )
        self.candidacy = Candidacy(
            self.zk, self.path, candidate_data(config.identity, config.namespace)
        )
        self.news = LeaderNews(self.zk, self.path)
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="election", daemon=True)
        # State below is touched by the worker thread only.
        self._watch_armed = False  # predecessor and own watches set on this connection
        self._predecessor: str | None = None
        self._heir = False  # the predecessor leads: keep an anchor, lead at once
        self._leading = False
        self._lease_deadline = 0.0
        self._next_tick = 0.0
        self._left = False
        self._last_leader: tuple[str, str, int] | None = None  # (node, identity, epoch)
        self._ghosts: set[str] = set()  # candidates' names on znodes of no session
        self._checked_first: str | None = None  # the last first candidate seen ephemeral
        self._foreign: set[str] = set()  # children that are no candidate, already logged
        self._refused = False  # ZooKeeper answered NoAuth; logged once until a verdict
        self.wakeups = 0  # re-checks caused by a watch: one per leader change, not N-1

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
        if event is SessionEvent.CONNECTED and negotiated and self.metrics is not None:
            self.metrics.session_timeout_granted(negotiated)
        self._events.put(Event(Kind.SESSION, session=event))

    def _on_watch(self, path: str, kind: WatchKind) -> None:
        self._events.put(Event(Kind.WATCH, path=path, watch=kind))

    # -- control (any thread) ----------------------------------------------------------

    def start(self) -> None:
        lease.check_invariants(self.config.session_timeout)
        self._thread.start()
        self.zk.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def step_down(self) -> None:
        self._events.put(Event(Kind.STEP_DOWN))

    def leave(self, timeout: float) -> bool:
        """Delete the own znode and stay out of the election. True once done in time."""
        if not self._thread.is_alive():
            return True  # never started, or stopped: nothing of ours in the election
        done = threading.Event()
        self._events.put(Event(Kind.LEAVE, done=done))
        return done.wait(timeout)

    def rejoin(self) -> None:
        self._events.put(Event(Kind.REJOIN))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker (cancel-and-wait) and close the session, which makes the server
        delete any znode of ours that is left."""
        self._events.put(Event(Kind.STOP))
        if self._thread.is_alive():
            self._thread.join(timeout)
        try:
            self.zk.close()
        except Exception:  # closing a broken client must not stop the shutdown
            log.debug("closing the ZooKeeper client failed", exc_info=True)

    # -- the worker --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=self._wait_time())
            except queue.Empty:
                event = None
            if event is not None and event.kind is Kind.STOP:
                return
            try:
                self._handle(event)
            except ZkError as error:
                self._on_error(error)
            except Exception:  # the worker must survive anything and try again
                log.exception("election step failed; retrying")
                self._next_tick = time.monotonic() + ERROR_BACKOFF
            finally:
                if event is not None and event.done is not None and event.kind is Kind.LEAVE:
                    event.done.set()

    def _wait_time(self) -> float:
        deadline = self._next_tick
        if self._leading:
            deadline = min(deadline, self._lease_deadline)
        return max(0.0, deadline - time.monotonic())

    def _on_error(self, error: ZkError) -> None:
        if isinstance(error, NotAuthorized):
            # Retrying cannot help until someone changes an ACL: one line, slower retries.
            if not self._refused:
                log.error("ZooKeeper refused access to %s: %s (check --zk-auth and the ACL "
                          "of the election's znodes); retrying every %gs", self.path, error,
                          REFUSED_BACKOFF)
            self._refused = True
            self._next_tick = time.monotonic() + REFUSED_BACKOFF
            return
        log.info("ZooKeeper request failed: %s; retrying", error)
        self._next_tick = time.monotonic() + ERROR_BACKOFF

    def _granted(self) -> None:
        """A verdict was reached: whatever ZooKeeper refused before, it grants now."""
        if self._refused:
            self._refused = False
            log.info("ZooKeeper grants access to %s again", self.path)

    def _handle(self, event: Event | None) -> None:
        if event is None:
            self._on_tick()
        elif event.kind is Kind.SESSION:
            self._on_session_event(event.session)
        elif event.kind is Kind.WATCH:
            self._on_watch_event(event.path, event.watch)
        elif event.kind is Kind.STEP_DOWN:
            self._resign()
        elif event.kind is Kind.LEAVE:
            self._leave()
        elif event.kind is Kind.REJOIN:
            self._left = False
            self.board.thaw()
            self._check()

    def _on_session_event(self, event: SessionEvent | None) -> None:
        self._leading = False
        self._watch_armed = False  # kazoo does not re-arm watches after a reconnect
        self.news.watch_armed = False
        if event is SessionEvent.CONNECTED:
            if self.candidacy.node is not None and not self.candidacy.of_current_session():
                self._predecessor = None
                self._heir = False
            self.candidacy.session_renewed()
            self._check()
        elif event is SessionEvent.LOST:
            # kazoo opens a new session and we volunteer again, at the back of the queue,
            # when it reports CONNECTED (see above for what is forgotten then).
            self.candidacy.session_lost()
            self._predecessor = None
            self._heir = False

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
            self._leading = False
            self._check()
        elif path == self.candidacy.node:
            self._check()  # someone wrote into it and spent the watch: arm it again
        elif path == self._predecessor:
            self.wakeups += 1
            if self.metrics is not None:
                self.metrics.woken()
            self._check(predecessor_led=self._heir and kind is WatchKind.DELETED)

    def _on_tick(self) -> None:
        now = time.monotonic()
        if self._leading and now >= self._lease_deadline:
            log.warning("lease ran out without renewal; no longer leader")
            self._leading = False
            self.board.expire_lease(self.board.token)
            # The session may have lived through it (a stall shorter than kazoo's read
            # timeout): then no session event comes, our znode is still first, and every
            # other candidate waits on it. Only a fresh listing (step 4) makes us lead
            # again; without one the group would have no leader for good.
            self._watch_armed = False
        if self._left or not self.zk.connected:
            self._next_tick = now + 1.0
            return
        if self._leading:
            self._renew()
        elif self.candidacy.node is None or not self._watch_armed:
            self._check()
        elif self._heir:
            self._renew_anchor()
        else:
            self._refresh()

    # -- protocol steps ----------------------------------------------------------------

    def _schedule_tick(self) -> None:
        self._next_tick = time.monotonic() + lease.renew_interval(self.zk.call_timeout)

    def _check(self, predecessor_led: bool = False) -> None:
        """Steps 2-5: find out where we stand and publish the verdict.

        `predecessor_led`: the znode just deleted was our predecessor *and* first in our
        last listing. Then we are first without listing again: sequence numbers in a parent
        only grow, so no candidate created since can sort before us. (If the parent was
        recreated meanwhile, our own znode went with it, and its deletion reached us
        before this one.) We lead on our anchor if it is fresh, else after a round trip.
        """
        if self._left or not self.zk.connected:
            return
        token = self.board.token
        if predecessor_led and self.candidacy.node is not None and (
            self._lead_on_anchor(token) or self._lead(token)
        ):
            return
        for _ in range(MAX_RELISTS):
            # 1. Be a candidate.
            if self.candidacy.node is None:
                self._leading = False
                if self.board.token != token:
                    return  # a session change is queued; it re-checks with the new state
                self.candidacy.volunteer()
            # 2. List, ignoring foreign children, ordered by integer sequence.
            try:
                children = self.zk.children(self.path)
            except NoNode:
                self.candidacy.forget()  # the parent was deleted, and our znode with it
                continue
            names = self._candidate_names(children)
            # 3. Own znode gone while the session lives: volunteer again.
            if self.candidacy.name not in names:
                log.warning("own znode %s is gone; volunteering again", self.candidacy.node)
                self.candidacy.forget()
                continue
            position = names.index(self.candidacy.name)
            if position == 0:
                if self._lead_on_anchor(token, "at once, on its fresh anchor") or self._lead(token):
                    return
                continue
            if self._follow(token, f"{self.path}/{names[position - 1]}", f"{self.path}/{names[0]}"):
                return
        log.warning("election did not settle after %d listings; retrying", MAX_RELISTS)
        self._next_tick = time.monotonic() + ERROR_BACKOFF

    def _candidate_names(self, children: list[str]) -> list[str]:
        """Step 2: the candidates among `children`, in election order. Other children
        (put there by hand or by another program) are logged once and ignored, and so is a
        znode with a candidate's name that belongs to no session (persistent, made by hand):
        no candidate ever leads through it, and it would block the election for good. The
        first candidate is checked once for that; a predecessor's stat in `_follow`."""
        candidates = parse_candidates(children)
        self._log_foreign(children, candidates)
        present = {candidate.name for candidate in candidates}
        self._ghosts &= present  # a ghost deleted by hand is forgotten
        names = [c.name for c in candidates if c.name not in self._ghosts]
        while names and names[0] != self.candidacy.name and names[0] != self._checked_first:
            stat = self.zk.stat(f"{self.path}/{names[0]}")
            if stat is not None and stat.ephemeral_owner != 0:
                self._checked_first = names[0]
                break
            if stat is not None:
                self._ghost(names[0])
            names.pop(0)
        return names

    def _ghost(self, name: str) -> None:
        log.warning("znode %s/%s has a candidate's name but no session (made by hand?): not a "
                    "candidate; ignored", self.path, name)
        self._ghosts.add(name)

    def _log_foreign(self, children: list[str], candidates: list[Candidate]) -> None:
        if len(children) == len(candidates) and not self._foreign:
            return
        names = {candidate.name for candidate in candidates}
        foreign = {child for child in children if child not in names}
        new = sorted(foreign - self._foreign)
        self._foreign = foreign
        if new:
            shown = ", ".join(repr(name[:64]) for name in new[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            log.warning("ignoring %d znode(s) in %s that are not a candidate: %s%s",
                        len(new), self.path, shown, more)

    def _lead(self, token: int) -> bool:
        """Step 4: confirm the own znode (CURATOR-696), then lead."""
        if self.candidacy.confirm() is None:
            log.warning("own znode %s not ours any more; volunteering again", self.candidacy.node)
            self.candidacy.forget()
            return False
        answered = self.zk.answered_send_time()
        timeout = self.zk.negotiated_timeout
        if answered is None or timeout is None or self.candidacy.czxid is None:
            return False
        self._become_leader(token, self.candidacy.czxid, lease.lease_deadline(answered, timeout))
        return True

    def _lead_on_anchor(self, token: int, how: str = "at once, on the heir's anchor") -> bool:
        """Step 4 with no round trip: the lease comes from the newest quorum-committed request
        of the own znode's session: the heir's anchor (`lease`, "The heir"), or the create
        just made by a candidate that lists itself first. False if that anchor is not fresh
        enough."""
        answered = self.zk.answered_send_time()
        timeout = self.zk.negotiated_timeout
        if answered is None or timeout is None or self.candidacy.czxid is None:
            return False
        if not self.candidacy.of_current_session():
            return False
        deadline = lease.lease_deadline(answered, timeout)
        if deadline - time.monotonic() < lease.margin(timeout):
            return False
        self._become_leader(token, self.candidacy.czxid, deadline, how=how)
        return True

    def _become_leader(
        self, token: int, epoch: int, deadline: float, how: str = "after a round trip"
    ) -> None:
        assert self.candidacy.node is not None
        self._predecessor = None
        self._heir = False
        self._lease_deadline = deadline
        if self.board.verdict(
            token, Role.LEADER, self.config.identity, epoch, lease.monotonic_to_wall(deadline)
        ):
            if not self._leading:
                log.info("elected leader with epoch %d %s", epoch, how)
            self._leading = True
        self._last_leader = (self.candidacy.node, self.config.identity, epoch)
        self._granted()
        if self.news.written_epoch == epoch:
            self._schedule_tick()
        else:
            # Write the record now, once the own role files say leader: sent at once, the
            # request would compete with that write for the interpreter, and the news
            # for followers can wait a few milliseconds; the application's cannot.
            self.board.wait_written(RECORD_AFTER_FILES_AT_MOST)
            self._next_tick = time.monotonic()

    def _follow(self, token: int, predecessor: str, first: str) -> bool:
        """Step 5: watch the immediate predecessor only; publish who leads."""
        assert self.candidacy.node is not None
        stat = self.zk.stat(predecessor, watch=True)
        if stat is None:
            return False  # vanished between listing and watching: list again
        if stat.ephemeral_owner == 0:
            self._ghost(predecessor.rsplit("/", 1)[1])
            return False  # no candidate: list again without it
        self._predecessor = predecessor
        self._heir = predecessor == first
        own: NodeStat | None
        if self._heir:
            own = self.candidacy.confirm()
        else:
            own = self.zk.stat(self.candidacy.node, watch=True)
        if own is None:
            self.candidacy.forget()
            return False
        leader = self._leader_named(first)
        if leader is None:
            return False
        self._watch_armed = True
        self._leading = False
        self.board.verdict(token, Role.FOLLOWER, leader[1], leader[2])
        self._granted()
        self._schedule_follower_tick()
        return True

    def _schedule_follower_tick(self) -> None:
        # The heir renews its anchor as often as a leader renews its lease; the others
        # only look whether their watches are still armed.
        interval = lease.renew_interval(self.zk.call_timeout) if self._heir else (
            self.zk.call_timeout
        )
        self._next_tick = time.monotonic() + interval

    def _leader_named(self, first: str) -> tuple[str, str, int] | None:
        """Who leads, for a follower: the record if it names `first`, else `first`'s data."""
        if not self.news.watch_armed:
            record = self.news.read()
            if record is not None and f"{self.path}/{record.node}" == first:
                self._last_leader = (first, record.identity, record.epoch)
        if self._last_leader is not None and self._last_leader[0] == first:
            return self._last_leader
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
        self._last_leader = (first, identity, stat.czxid)
        return self._last_leader

    def _take_record(self) -> None:
        """Step 6: a new leader wrote the record; followers show it, its successor is heir."""
        token = self.board.token
        if self._leading or self._left or self.candidacy.node is None or not self.zk.connected:
            return
        record = self.news.read()
        if record is None or not self._watch_armed:
            return
        shown = self.board.current().epoch
        if shown is not None and record.epoch < shown:
            return  # never go back to an older leader
        leader_node = f"{self.path}/{record.node}"
        self._last_leader = (leader_node, record.identity, record.epoch)
        self.board.verdict(token, Role.FOLLOWER, record.identity, record.epoch)
        if not self._heir and self._predecessor == leader_node:
            # The heir leads without a listing when its predecessor goes, so it must know
            # that predecessor is first: a listing of its own, never the record alone (which
            # anyone with write access could have forged), makes it the heir.
            self._check()

    def _renew(self) -> None:
        """The lease round trip (the record rides along when due); re-arms the own watch."""
        token = self.board.token
        assert self.candidacy.czxid is not None
        # An answer after the lease ran out renews nothing: wait no longer than the lease.
        remaining = max(0.05, self._lease_deadline - time.monotonic())
        record = LeaderRecord(self.config.identity, self.candidacy.czxid, self.candidacy.name)
        if self.news.renew_with(self.candidacy, record, remaining) is None:
            self.candidacy.forget()
            self._leading = False
            self._check()
            return
        answered = self.zk.answered_send_time()
        timeout = self.zk.negotiated_timeout
        if answered is not None and timeout is not None:
            self._lease_deadline = lease.lease_deadline(answered, timeout)
            if not self.board.renew(token, lease.monotonic_to_wall(self._lease_deadline)):
                self._check()  # the board moved on (session change): re-check now
                return
        self._schedule_tick()

    def _renew_anchor(self) -> None:
        """The heir's anchor: a quorum-committed check of its own znode every renewal
        interval, so that its lease is ready when its predecessor goes."""
        if self.candidacy.confirm() is None:
            self.candidacy.forget()
            self._heir = False
            self._check()
            return
        self._schedule_follower_tick()

    def _refresh(self) -> None:
        """A plain follower's periodic look: no request while its watches are armed."""
        if not self.news.watch_armed:
            self._take_record()
        self._schedule_follower_tick()

    def _resign(self) -> None:
        """Step down: demote, delete the own znode, volunteer again at the back."""
        if not self._leading or self.candidacy.node is None:
            log.info("step-down asked but not leader; nothing to do")
            return
        token = self.board.token
        self._leading = False
        self.board.verdict(token, Role.UNKNOWN, None, None)
        self.board.wait_demoted(1.0)
        self._delete_own(deadline=time.monotonic() + self.zk.call_timeout)
        log.info("stepped down; volunteering again at the back of the queue")
        self._check()

    def _leave(self) -> None:
        self._left = True
        self._leading = False
        if not self.board.frozen:  # the runner usually froze it already
            self.board.freeze()
            self.board.wait_demoted(1.0)
        deadline = time.monotonic() + self.zk.call_timeout
        try:
            self.candidacy.find_lost_create()
        except ZkError as error:
            log.warning("could not look for a znode of a lost create: %s", error)
        self._delete_own(deadline)

    def _delete_own(self, deadline: float) -> None:
        self._predecessor = None
        self._heir = False
        self.candidacy.delete(deadline)
