"""The election: the seed's ZooKeeper recipe, with the edge cases the best recipes learned.

Protocol (numbered as in `_check` and `_volunteer`):

1. Volunteer: create an EPHEMERAL_SEQUENTIAL znode `candidate-<attempt>-<seq>` under the
   election path. `<attempt>` is a fresh UUID per attempt (Curator's protected mode): if
   the reply to the create is lost, the candidate finds its znode again by that prefix and
   adopts it only if its `ephemeralOwner` is the current session; otherwise it deletes it.
2. List the children; ignore foreign names; order by the integer sequence.
3. If the own znode is missing (deleted by hand, or the parent was deleted), volunteer
   again.
4. If the own znode is first: confirm it still exists and belongs to this session
   (CURATOR-696), then lead with epoch = its czxid and a lease (see `lease`).
5. Otherwise watch only the immediate predecessor (no herd). If it vanished between the
   listing and the watch, list again; never create a second znode.

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
import json
import logging
import queue
import re
import threading
import time
import uuid

from . import lease
from .board import StatusBoard
from .config import Config
from .metrics import Metrics
from .state import Role, ZkState
from .zk import (
    ConnectionTrouble,
    NoNode,
    NotAuthorized,
    SessionEvent,
    SessionGone,
    WatchKind,
    ZkError,
    ZkSession,
)

log = logging.getLogger(__name__)

CANDIDATE_PREFIX = "candidate-"
CANDIDATE_RE = re.compile(r"^candidate-([0-9a-f]{32})-(-?\d{10})$")
MAX_RELISTS = 20
ERROR_BACKOFF = 0.2
LEAVE_RETRY_DELAY = 0.05


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    attempt: str
    sequence: int


def parse_candidates(names: list[str]) -> list[Candidate]:
    """Our candidates among `names`, in election order (integer sequence, not string)."""
    found = []
    for name in names:
        match = CANDIDATE_RE.match(name)
        if match:
            found.append(Candidate(name, match.group(1), int(match.group(2))))
    return sorted(found, key=lambda candidate: candidate.sequence)


def candidate_data(config: Config) -> bytes:
    return json.dumps(
        {"identity": config.identity, "pod": config.identity, "namespace": config.namespace}
    ).encode()


def identity_of(data: bytes, fallback: str) -> str:
    try:
        document = json.loads(data.decode())
        return str(document["identity"])
    except (ValueError, KeyError, TypeError):
        return fallback


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
        self.data = candidate_data(config)
        self.zk = ZkSession(
            config.zk_hosts,
            config.session_timeout,
            on_session=self._on_session,
            on_watch=self._on_watch,
            zk_auth=config.zk_auth,
        )
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="election", daemon=True)
        # State below is touched by the worker thread only.
        self.my_node: str | None = None
        self._node_session: int | None = None  # the session my_node was created in
        self._watch_armed = False  # predecessor and own watches set on this connection
        self._attempt_in_doubt: str | None = None
        self._predecessor: str | None = None
        self._predecessor_was_first = False
        self._leading = False
        self._lease_deadline = 0.0
        self._next_tick = 0.0
        self._left = False
        self._last_leader: tuple[str, str, int] | None = None  # (node, identity, epoch)
        self.wakeups = 0  # re-checks caused by a watch: one per leader change, not N-1

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
            self.metrics.session_timeout.set(negotiated)
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
            log.error("ZooKeeper refused access to %s: %s (check --zk-auth)", self.path, error)
        else:
            log.info("ZooKeeper request failed: %s; retrying", error)
        self._next_tick = time.monotonic() + ERROR_BACKOFF

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
        if event is SessionEvent.CONNECTED:
            session = self.zk.session_id
            if self.my_node is not None and session is not None and self._node_session != session:
                # Created in a session that has since expired: the server deleted it. A
                # node created in the *new* session (a race with LOST) is kept.
                self.my_node = None
                self._attempt_in_doubt = None
                self._predecessor = None
            self._check()
        elif event is SessionEvent.LOST:
            # kazoo opens a new session and we volunteer again, at the back of the queue,
            # when it reports CONNECTED (see above for what is forgotten then).
            self._attempt_in_doubt = None
            self._predecessor = None

    def _on_watch_event(self, path: str, kind: WatchKind | None) -> None:
        if kind is WatchKind.CONNECTION:
            return  # kazoo fires every watch on connection loss; CONNECTED re-lists
        if path == self.my_node and kind is WatchKind.DELETED:
            log.warning("own znode %s was deleted; volunteering again", path)
            self.my_node = None
            self._leading = False
            self._check()
        elif path == self._predecessor:
            self.wakeups += 1
            if self.metrics is not None:
                self.metrics.watch_wakeups.inc()
            self._check(predecessor_led=self._predecessor_was_first and kind is WatchKind.DELETED)

    def _on_tick(self) -> None:
        now = time.monotonic()
        if self._leading and now >= self._lease_deadline:
            log.warning("lease ran out without renewal; no longer leader")
            self._leading = False
            self.board.expire_lease(self.board.token)
        if self._left or not self.zk.connected:
            self._next_tick = now + 1.0
            return
        if self._leading:
            self._renew()
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
        recreated meanwhile, our own znode went with it and step 4's check fails.)
        """
        if self._left or not self.zk.connected:
            return
        token = self.board.token
        if predecessor_led and self.my_node is not None and self._lead(token):
            return
        for _ in range(MAX_RELISTS):
            # 1. Be a candidate.
            if self.my_node is None:
                self._leading = False
                if self.board.token != token:
                    return  # a session change is queued; it re-checks with the new state
                self.my_node = self._volunteer()
            # 2. List, ignoring foreign children, ordered by integer sequence.
            try:
                candidates = parse_candidates(self.zk.children(self.path))
            except NoNode:
                self.my_node = None  # the parent was deleted, and our znode with it
                continue
            names = [candidate.name for candidate in candidates]
            own_name = self.my_node.rsplit("/", 1)[1]
            # 3. Own znode gone while the session lives: volunteer again.
            if own_name not in names:
                log.warning("own znode %s is gone; volunteering again", self.my_node)
                self.my_node = None
                continue
            position = names.index(own_name)
            if position == 0:
                if self._lead(token):
                    return
                continue
            if self._follow(token, f"{self.path}/{names[position - 1]}", f"{self.path}/{names[0]}"):
                return
        log.warning("election did not settle after %d listings; retrying", MAX_RELISTS)
        self._next_tick = time.monotonic() + ERROR_BACKOFF

    def _volunteer(self) -> str:
        """Step 1, with protected-mode recovery of a create whose reply was lost."""
        self.zk.ensure_path(self.path)
        if self._attempt_in_doubt is not None:
            adopted = self._recover(self._attempt_in_doubt)
            if adopted is not None:
                self._attempt_in_doubt = None
                self._node_session = self.zk.session_id
                return adopted
        attempt = self._attempt_in_doubt or uuid.uuid4().hex
        self._attempt_in_doubt = attempt
        session = self.zk.require_session()
        node = self.zk.create_ephemeral_sequential(
            f"{self.path}/{CANDIDATE_PREFIX}{attempt}-", self.data
        )
        self._attempt_in_doubt = None
        self._node_session = session
        log.info("volunteered as %s", node)
        return node

    def _recover(self, attempt: str) -> str | None:
        """Find the znode of an attempt whose create reply was lost; adopt or delete it."""
        session = self.zk.require_session()
        for candidate in parse_candidates(self.zk.children(self.path)):
            if candidate.attempt != attempt:
                continue
            node = f"{self.path}/{candidate.name}"
            stat = self.zk.stat(node)
            if stat is not None and stat.ephemeral_owner == session:
                log.info("adopted %s after a lost create reply", node)
                return node
            try:
                self.zk.delete(node)
                log.warning("deleted orphan %s of an earlier session", node)
            except NoNode:
                pass
        return None

    def _lead(self, token: int) -> bool:
        """Step 4: confirm the own znode (CURATOR-696), then lead."""
        assert self.my_node is not None
        stat, session = self.zk.confirmed_stat(self.my_node)
        if stat is None or stat.ephemeral_owner != session:
            log.warning("own znode %s not ours any more; volunteering again", self.my_node)
            self.my_node = None
            return False
        answered = self.zk.answered_send_time()
        timeout = self.zk.negotiated_timeout
        if answered is None or timeout is None:
            return False
        self._predecessor = None
        self._predecessor_was_first = False
        self._lease_deadline = lease.lease_deadline(answered, timeout)
        if self.board.verdict(
            token, Role.LEADER, self.config.identity, stat.czxid,
            lease.monotonic_to_wall(self._lease_deadline),
        ):
            if not self._leading:
                log.info("elected leader with epoch %d", stat.czxid)
            self._leading = True
        self._last_leader = (self.my_node, self.config.identity, stat.czxid)
        self._schedule_tick()
        return True

    def _follow(self, token: int, predecessor: str, first: str) -> bool:
        """Step 5: watch the immediate predecessor only; publish who leads."""
        assert self.my_node is not None
        if self.zk.stat(predecessor, watch=True) is None:
            return False  # vanished between listing and watching: list again
        self._predecessor = predecessor
        self._predecessor_was_first = predecessor == first
        if self.zk.stat(self.my_node, watch=True) is None:
            self.my_node = None
            return False
        leader = self._leader_of(first)
        if leader is None:
            return False
        self._watch_armed = True
        self._leading = False
        self.board.verdict(token, Role.FOLLOWER, leader[1], leader[2])
        self._next_tick = time.monotonic() + self.zk.call_timeout
        return True

    def _leader_of(self, first: str) -> tuple[str, str, int] | None:
        if self._last_leader is not None and self._last_leader[0] == first:
            return self._last_leader
        try:
            data, stat = self.zk.get(first)
        except NoNode:
            return None
        self._last_leader = (first, identity_of(data, first.rsplit("/", 1)[1]), stat.czxid)
        return self._last_leader

    def _renew(self) -> None:
        """The lease round trip: also re-arms the watch on the own znode."""
        token = self.board.token
        assert self.my_node is not None
        # An answer after the lease ran out renews nothing: wait no longer than the lease.
        remaining = max(0.05, self._lease_deadline - time.monotonic())
        stat, session = self.zk.confirmed_stat(self.my_node, timeout=remaining)
        if stat is None or stat.ephemeral_owner != session:
            self.my_node = None
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

    def _refresh(self) -> None:
        """A follower's periodic look at who leads (no watches: no herd)."""
        if self.my_node is None:
            self._check()
            return
        token = self.board.token
        names = [c.name for c in parse_candidates(self.zk.children(self.path))]
        own_name = self.my_node.rsplit("/", 1)[1]
        if own_name not in names or names.index(own_name) == 0:
            self._check()
            return
        position = names.index(own_name)
        if f"{self.path}/{names[position - 1]}" != self._predecessor or not self._watch_armed:
            self._check()
            return
        leader = self._leader_of(f"{self.path}/{names[0]}")
        if leader is not None:
            self.board.verdict(token, Role.FOLLOWER, leader[1], leader[2])
        # Followers list once per session timeout (leaders renew every quarter): at 200
        # candidates a quarter-timeout listing was most of the ensemble's load.
        self._next_tick = time.monotonic() + self.zk.call_timeout

    def _resign(self) -> None:
        """Step down: demote, delete the own znode, volunteer again at the back."""
        if not self._leading or self.my_node is None:
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
        if self.my_node is None and self._attempt_in_doubt is not None:
            # A create whose reply was lost may have made a znode that would block the
            # election for as long as this process lives: find it and delete it too.
            try:
                self.my_node = self._recover(self._attempt_in_doubt)
            except ZkError as error:
                log.warning("could not look for a znode of a lost create: %s", error)
            self._attempt_in_doubt = None
        self._delete_own(deadline)

    def _delete_own(self, deadline: float) -> None:
        """Delete the own znode, retrying until the deadline (the session close that follows
        a stop deletes it anyway)."""
        node, self.my_node = self.my_node, None
        self._predecessor = None
        if node is None:
            return
        while True:
            try:
                self.zk.delete(node, timeout=max(0.05, deadline - time.monotonic()))
                log.info("deleted own znode %s", node)
                return
            except (NoNode, SessionGone):
                return
            except (ConnectionTrouble, NotAuthorized) as error:
                if time.monotonic() >= deadline:
                    log.warning("could not delete %s before the deadline: %s", node, error)
                    return
                time.sleep(LEAVE_RETRY_DELAY)
