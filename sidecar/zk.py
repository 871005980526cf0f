"""The one module that imports kazoo: a ZooKeeper session as the election needs it.

What this layer adds to kazoo, and why:

- Every request has a deadline (the negotiated session timeout). kazoo queues requests
  made while disconnected until it reconnects; the election must never hang on them.
- The negotiated session timeout is captured from kazoo's own `Session created` log record
  (kazoo computes it but does not keep it). The lease depends on it: a server may grant
  less than was asked for, and a lease longer than the server honours would be unsafe.
- `confirmed_stat` anchors the lease: a check-only transaction on the own znode (a write:
  the ZooKeeper leader must commit it with a quorum) pipelined with the `exists` that reads
  the stat and re-arms the watch. Only the send time of such a committed transaction is
  recorded. The same transaction may carry one `set_data` (the leader record): it commits
  only while the own znode exists. Plain reads are answered from the connected server's
  local copy, and a server cut off from the ZooKeeper leader keeps answering them for up
  to syncLimit ticks while the quorum may already have expired the session: a read proves
  nothing about the lease.
- kazoo types stay here: callers see `NodeStat`, `SessionEvent` and the small exceptions
  below.

Not guaranteed: callbacks (state listener and watches) run on kazoo's threads and must
hand their work off at once; this module does not queue for them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RolledBackError,
    SessionExpiredError,
)
from kazoo.protocol.states import EventType, KazooState, WatchedEvent
from kazoo.retry import KazooRetry
from kazoo.security import make_acl, make_digest_acl

from .config import Config
from .state import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

BLATHER = 5  # kazoo's own log level below DEBUG


class ZkError(Exception):
    """Base of the errors this layer raises."""


class NoNode(ZkError):
    pass


class NodeExists(ZkError):
    pass


class NotAuthorized(ZkError):
    pass


class ConnectionTrouble(ZkError):
    """No answer: connection lost or request timed out. The session may still live."""


class SessionGone(ZkError):
    """The session expired or the client was closed."""


class SessionEvent(enum.Enum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"


class WatchKind(enum.Enum):
    DELETED = "deleted"
    CHANGED = "changed"
    CONNECTION = "connection"  # kazoo fires every watch with NONE on connection loss


class NodeStat(Record):
    __slots__ = ("czxid", "ephemeral_owner", "mzxid", "version")

    def __init__(self, czxid: int, ephemeral_owner: int, version: int, mzxid: int = 0) -> None:
        self.czxid = czxid
        self.ephemeral_owner = ephemeral_owner
        self.version = version
        self.mzxid = mzxid  # the zxid of the newest change of its data


def _node_stat(stat: Any) -> NodeStat:
    return NodeStat(int(stat.czxid), int(stat.ephemeralOwner), int(stat.version), int(stat.mzxid))


def _translate(error: BaseException) -> ZkError:
    if isinstance(error, NoNodeError):
        return NoNode(str(error))
    if isinstance(error, NodeExistsError):
        return NodeExists(str(error))
    if isinstance(error, NoAuthError | AuthFailedError):
        return NotAuthorized(str(error) or type(error).__name__)
    if isinstance(error, SessionExpiredError | ConnectionClosedError):
        return SessionGone(type(error).__name__)
    if isinstance(error, ConnectionLoss | OperationTimeoutError | TimeoutError):
        return ConnectionTrouble(type(error).__name__)
    if isinstance(error, NotEmptyError):
        return ZkError("not empty")
    if isinstance(error, KazooException):
        return ConnectionTrouble(f"{type(error).__name__}: {error}")
    return ConnectionTrouble(f"{type(error).__name__}: {error}")


class _NegotiatedTimeoutCapture(logging.Filter):
    """Reads the negotiated timeout off kazoo's `Session created` record; drops BLATHER."""

    def __init__(self, on_timeout: Callable[[float], None]) -> None:
        super().__init__()
        self.on_timeout = on_timeout

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= BLATHER:
            if isinstance(record.msg, str) and record.msg.startswith("Session created"):
                args = record.args if isinstance(record.args, tuple) else ()
                if len(args) >= 3 and isinstance(args[2], int | float):
                    self.on_timeout(float(args[2]) / 1000.0)
            return False
        # Below BLATHER we only listen; everything else obeys kazoo's configured level.
        return record.levelno >= logging.getLogger("kazoo.client").getEffectiveLevel()


def _kazoo_logger(on_timeout: Callable[[float], None]) -> logging.Logger:
    # A logger of our own per client, parented to kazoo's so its records still reach the
    # usual handlers; it must see BLATHER records to capture the negotiated timeout.
    logger = logging.Logger("kazoo.client", level=BLATHER)
    logger.parent = logging.getLogger("kazoo.client")
    logger.addFilter(_NegotiatedTimeoutCapture(on_timeout))
    return logger


def parse_auth(zk_auth: str | None) -> tuple[str, str] | None:
    if not zk_auth:
        return None
    user, _, password = zk_auth.partition(":")
    return user, password


def session_for(config: Config) -> ZkSession:
    """The session an election of `config` runs on, not started yet."""
    return ZkSession(config.zk_hosts, config.session_timeout, zk_auth=config.zk_auth)


class ZkSession:
    """One kazoo client that reconnects forever and reports plain events.

    `on_session` receives `SessionEvent`s; `on_watch` receives `(path, WatchKind)`. Both are
    called on kazoo's threads and must not block. A session may be started before its
    callbacks exist (`attach`): its events are held until then, in order.
    """

    def __init__(
        self,
        hosts: str,
        session_timeout: float,
        on_session: Callable[[SessionEvent], None] | None = None,
        on_watch: Callable[[str, WatchKind], None] | None = None,
        zk_auth: str | None = None,
    ) -> None:
        self.requested_timeout = session_timeout
        self._negotiated: float | None = None
        self._lock = threading.Lock()
        self._answered_send: float | None = None
        self._answered_session: int | None = None
        self._delivery = threading.Lock()
        self._held: list[SessionEvent] | None = []
        self._on_session: Callable[[SessionEvent], None] = lambda _: None
        self._on_watch: Callable[[str, WatchKind], None] = lambda *_: None
        self._started = False
        if on_session is not None and on_watch is not None:
            self.attach(on_session, on_watch)
        auth = parse_auth(zk_auth)
        acl = None
        auth_data = None
        self._shared_acl: list[Any] | None = None
        if auth is not None:
            acl = [
                make_digest_acl(auth[0], auth[1], all=True),
                make_acl("world", "anyone", read=True),
            ]
            # The parents above an election (`/leader-election`) are shared by every
            # group, each with credentials of its own: all may read and create there,
            # nobody else may delete or change.
            self._shared_acl = [
                make_digest_acl(auth[0], auth[1], all=True),
                make_acl("world", "anyone", read=True, create=True),
            ]
            auth_data = [("digest", f"{auth[0]}:{auth[1]}")]
        self.client = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            connection_retry=KazooRetry(
                max_tries=-1, delay=0.05, backoff=2, max_delay=2.0, max_jitter=0.2
            ),
            default_acl=acl,
            auth_data=auth_data,
            logger=_kazoo_logger(self._set_negotiated),
        )
        self.client.add_listener(self._listener)

    # -- session ---------------------------------------------------------------------

    def _set_negotiated(self, seconds: float) -> None:
        self._negotiated = seconds

    @property
    def negotiated_timeout(self) -> float | None:
        """What the server granted for the current session (None before the first one)."""
        return self._negotiated

    @property
    def call_timeout(self) -> float:
        return self._negotiated or self.requested_timeout

    @property
    def session_id(self) -> int | None:
        session = self.client.client_id
        return int(session[0]) if session else None

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def attach(
        self, on_session: Callable[[SessionEvent], None], on_watch: Callable[[str, WatchKind], None]
    ) -> None:
        """Deliver events to these callbacks from now on, the session events held since
        `start` first."""
        with self._delivery:
            self._on_session, self._on_watch = on_session, on_watch
            held, self._held = self._held or [], None
            for event in held:
                on_session(event)

    def _listener(self, state: str) -> None:
        if state == KazooState.CONNECTED:
            event = SessionEvent.CONNECTED
        elif state == KazooState.SUSPENDED:
            event = SessionEvent.SUSPENDED
        else:
            with self._lock:
                self._answered_send = None
            event = SessionEvent.LOST
        with self._delivery:
            if self._held is not None:
                self._held.append(event)
                return
        self._on_session(event)

    def _watch(self, event: WatchedEvent) -> None:
        if event.type == EventType.NONE:
            kind = WatchKind.CONNECTION
        elif event.type == EventType.DELETED:
            kind = WatchKind.DELETED
        else:
            kind = WatchKind.CHANGED
        self._on_watch(event.path or "", kind)

    def start(self) -> None:
        """Connect in the background; never raises for an unreachable ensemble. Once:
        kazoo would drop a connection under way and begin again."""
        if not self._started:
            self._started = True
            self.client.start_async()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (for one-shot commands such as `status`)."""
        deadline = time.monotonic() + timeout
        while not self.connected:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        try:
            self.client.stop()
        finally:
            self.client.close()

    def answered_send_time(self) -> float | None:
        """Monotonic send time of the newest quorum-committed request of this session."""
        with self._lock:
            if self._answered_session != self.session_id:
                return None
            return self._answered_send

    # -- requests --------------------------------------------------------------------

    def _call(self, start: Callable[[], Any], timeout: float | None = None) -> Any:
        try:
            return start().get(timeout=timeout or self.call_timeout)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            raise _translate(error) from None

    def require_session(self) -> int:
        """The current session id; ConnectionTrouble while kazoo is not connected (kazoo
        reports no id then, and no ownership can be judged against None)."""
        session = self.session_id
        if session is None:
            raise ConnectionTrouble("not connected")
        return session

    def confirmed_stat(
        self,
        path: str,
        timeout: float | None = None,
        also_set: tuple[str, bytes] | None = None,
    ) -> tuple[NodeStat | None, int]:
        """Stat of `path` (watch armed) and the session the request went out in, with the
        session's liveness confirmed by a quorum. The stat is None if the node is gone.

        `also_set=(other, data)` writes `data` into `other` in the same transaction, so it
        commits only while `path` exists. NoNode is raised if `other` does not exist."""
        session = self.require_session()
        sent = time.monotonic()
        transaction = self.client.transaction()
        transaction.check(path, -1)
        if also_set is not None:
            transaction.set_data(*also_set)
        committed = transaction.commit_async()
        read = self.client.exists_async(path, watch=self._watch)
        deadline = timeout or self.call_timeout
        results = self._call(lambda: committed, deadline)
        stat = self._call(lambda: read, deadline)
        if also_set is not None and isinstance(results[0], RolledBackError):
            # The check passed and the write failed (NoNode, NotAuthorized, ...).
            raise _translate(results[-1])
        if stat is None or any(isinstance(r, Exception) for r in results):
            return None, session
        self._record_answer(session, sent)
        return _node_stat(stat), session

    def _record_answer(self, session: int | None, sent: float) -> None:
        with self._lock:
            if session is None or session != self.session_id:
                return
            if self._answered_session != session:
                self._answered_session, self._answered_send = session, sent
            elif self._answered_send is None or sent > self._answered_send:
                self._answered_send = sent

    def ensure_path(self, path: str) -> None:
        """Create `path` (and its parents) unless it exists. With credentials, `path` gets
        the group's ACL and the parents above it the shared one (see `__init__`)."""
        parent = path.rsplit("/", 1)[0]
        if self._shared_acl is None or not parent or self.stat(path) is not None:
            self._call(lambda: self.client.ensure_path_async(path))
            return
        shared = self._shared_acl
        self._call(lambda: self.client.ensure_path_async(parent, acl=shared))
        with contextlib.suppress(NodeExists):  # a peer made it meanwhile
            self._call(lambda: self.client.create_async(path))

    def _ancestry(self, path: str) -> list[tuple[str, Any]]:
        """`path` and its ancestors below the root, top first, each with the ACL
        `ensure_path` gives it (None: the client's default)."""
        parts = path.strip("/").split("/")
        paths = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
        return [(p, self._shared_acl if p != path else None) for p in paths]

    def create_listed(
        self, parent: str, path_prefix: str, data: bytes
    ) -> tuple[str, int, list[str] | None]:
        """`create_ephemeral_sequential` under `parent`, and the listing of `parent`, in
        one round trip instead of one per request: the creates of `parent` and of its
        ancestors (each may exist already: that error is ignored), the node's create and
        the listing go out back to back. ZooKeeper answers one session's requests in
        order, so the listing is served after the create. Returns the node's path, its
        czxid and the listing (None if only the listing failed). NoNode if `parent` could
        not be made: `ensure_path` then says why."""
        session = self.require_session()
        sent = time.monotonic()
        for path, acl in self._ancestry(parent):
            self.client.create_async(path, acl=acl)  # its answer comes first, unread
        created = self.client.create_async(
            path_prefix, data, ephemeral=True, sequence=True, include_data=True
        )
        listed = self.client.get_children_async(parent)
        node, stat = self._call(lambda: created)
        self._record_answer(session, sent)
        try:
            names: list[str] | None = self._call(lambda: listed)
        except ZkError:
            names = None
        return str(node), int(stat.czxid), names

    def create_ephemeral_sequential(self, path_prefix: str, data: bytes) -> tuple[str, int]:
        """The created node's path and czxid (one request: ZooKeeper's create2). A create is
        committed by a quorum like the lease's check transaction, so it anchors a lease
        too (`answered_send_time`)."""
        session = self.require_session()
        sent = time.monotonic()
        node, stat = self._call(
            lambda: self.client.create_async(
                path_prefix, data, ephemeral=True, sequence=True, include_data=True
            )
        )
        self._record_answer(session, sent)
        return str(node), int(stat.czxid)

    def children(self, path: str) -> list[str]:
        names: list[str] = self._call(lambda: self.client.get_children_async(path))
        return names

    def stat(
        self, path: str, watch: bool = False, timeout: float | None = None
    ) -> NodeStat | None:
        """Stat of `path` or None if absent; with `watch`, a watch is left on it either way."""
        watcher = self._watch if watch else None
        stat = self._call(lambda: self.client.exists_async(path, watch=watcher), timeout)
        return None if stat is None else _node_stat(stat)

    def get(self, path: str) -> tuple[bytes, NodeStat]:
        data, stat = self._call(lambda: self.client.get_async(path))
        return bytes(data), _node_stat(stat)

    def get_watched(self, path: str) -> tuple[bytes, NodeStat] | None:
        """Data and stat of `path`, or None if absent; a watch is left on it either way (a
        `get` on a missing node leaves none, so an `exists` takes its place)."""
        for _ in range(3):
            try:
                data, stat = self._call(lambda: self.client.get_async(path, watch=self._watch))
                return bytes(data), _node_stat(stat)
            except NoNode:
                if self.stat(path, watch=True) is None:
                    return None
        raise ConnectionTrouble(f"{path} keeps appearing and vanishing")

    def delete(self, path: str, timeout: float | None = None) -> None:
        self._call(lambda: self.client.delete_async(path), timeout=timeout)

    def set_data(self, path: str, data: bytes) -> None:
        self._call(lambda: self.client.set_async(path, data))
