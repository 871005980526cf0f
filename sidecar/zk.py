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
- A connection attempt gets at most a third of the session timeout (`CONNECT_SHARE`), so a
  session whose server died survives one attempt at a dead endpoint (a crashed node behind
  the chart's one ClusterIP stays Ready for 40-50 s): kazoo gives the handshake the session
  timeout divided by the number of addresses in the connect string, so a string of fewer
  than three lists them again (`_connect_string`; each repeat is a fresh connection the
  Service balances anew), and kazoo's TCP connect, which waits the whole session timeout,
  is capped by a handler of our own (`_CappedConnectHandler`).

Not guaranteed: callbacks (state listener and watches) run on kazoo's threads and must
hand their work off at once; this module does not queue for them.
"""

from __future__ import annotations

import collections
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
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.states import EventType, KazooState, WatchedEvent
from kazoo.retry import KazooRetry
from kazoo.security import (
    ACL,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

from .config import Config, ZkTls
from .state import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

BLATHER = 5  # kazoo's own log level below DEBUG
CONNECT_SHARE = 3  # a connection attempt may take 1/CONNECT_SHARE of the session timeout


class ZkError(Exception):
    """Base of the errors this layer raises."""


class NoNode(ZkError):
    pass


class NodeExists(ZkError):
    pass


class NotAuthorized(ZkError):
    pass


class Perm(enum.IntFlag):
    """ZooKeeper's permission bits, as an ACL entry carries them."""

    READ = Permissions.READ
    WRITE = Permissions.WRITE
    CREATE = Permissions.CREATE
    DELETE = Permissions.DELETE
    ADMIN = Permissions.ADMIN


class AclEntry(Record):
    """One entry of a znode's ACL: `scheme:id` may do `perms`."""

    __slots__ = ("id", "perms", "scheme")

    def __init__(self, scheme: str, id: str, perms: Perm) -> None:
        self.scheme = scheme
        self.id = id
        self.perms = perms

    def __str__(self) -> str:
        granted = "".join(
            letter for letter, bit in zip("rwcda", Perm, strict=True) if bit in self.perms
        )
        return f"{self.scheme}:{self.id}:{granted or '-'}"


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


class _KazooWiretap(logging.Filter):
    """Reads what the lease needs off kazoo's own log records, which say more than its
    API: the negotiated timeout (`Session created`, which kazoo computes but does not
    keep), the instant a connect starts (`Connecting to`) and every packet sent
    (`Sending request`, pings included: each touches the session at the server, `lease`
    2.). Drops BLATHER records; everything else obeys kazoo's configured level."""

    def __init__(self, sends: SendLog, on_timeout: Callable[[float], None]) -> None:
        super().__init__()
        self.sends = sends
        self.on_timeout = on_timeout

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if isinstance(message, str):
            if message.startswith("Sending request"):
                self.sends.sent(time.monotonic())
            elif message.startswith("Connecting to"):
                self.sends.connecting(time.monotonic())
            elif message.startswith("Session created"):
                args = record.args if isinstance(record.args, tuple) else ()
                if len(args) >= 3 and isinstance(args[2], int | float):
                    self.on_timeout(float(args[2]) / 1000.0)
                if args and isinstance(args[0], int):
                    self.sends.connected(args[0])
        if record.levelno <= BLATHER:
            return False
        return record.levelno >= logging.getLogger("kazoo.client").getEffectiveLevel()


class SendLog:
    """When this client touched its session (`lease` 2.): the packets it sent, and the
    connects of the session, which touch it at the ZooKeeper leader directly. Written on
    kazoo's connection thread, read on the election's; forgets a session once another
    one is created. Keeps what an anchor of the next `KEEP_FOR` session timeouts needs."""

    KEEP_FOR = 2.0

    def __init__(self, session_timeout: float) -> None:
        self.session_timeout = session_timeout
        self._lock = threading.Lock()
        self._session: int | None = None
        self._connecting: float | None = None  # a connect under way: its start
        self._connects: list[float] = []  # connects of this session, oldest first
        self._sends: collections.deque[float] = collections.deque()

    def sent(self, instant: float) -> None:
        with self._lock:
            sends = self._sends
            sends.append(instant)
            horizon = instant - self.KEEP_FOR * self.session_timeout
            while len(sends) > 1 and sends[1] <= horizon:
                sends.popleft()

    def connecting(self, instant: float) -> None:
        with self._lock:
            self._connecting = instant

    def connected(self, session: int) -> None:
        with self._lock:
            if session != self._session:
                self._session = session
                self._connects.clear()
                self._sends.clear()
            if self._connecting is not None:
                self._connects = [*self._connects[-1:], self._connecting]
                self._connecting = None

    def touch(self, session: int | None, anchor_sent: float, forwarded_by: float) -> float | None:
        """The newest instant at which the ZooKeeper leader certainly received a touch of
        `session`, for an anchor sent at `anchor_sent`: a connect started before it, or a
        packet sent at or before `forwarded_by`. None if neither is known."""
        with self._lock:
            if session is None or session != self._session:
                return None
            found = [c for c in self._connects if c <= anchor_sent]
            found += [s for s in reversed(self._sends) if s <= forwarded_by][:1]
        return max(found) if found else None


def _kazoo_logger(wiretap: _KazooWiretap) -> logging.Logger:
    # A logger of our own per client, parented to kazoo's so its records still reach the
    # usual handlers; it must see BLATHER records to read the wiretap's facts.
    logger = logging.Logger("kazoo.client", level=BLATHER)
    logger.parent = logging.getLogger("kazoo.client")
    logger.addFilter(wiretap)
    return logger


def parse_auth(zk_auth: str | None) -> tuple[str, str] | None:
    if not zk_auth:
        return None
    user, _, password = zk_auth.partition(":")
    return user, password


def _connect_string(hosts: str) -> str:
    """`hosts` with its addresses repeated until there are `CONNECT_SHARE` of them or more.

    kazoo (protocol/connection.py, `_connect`) waits for the Connect reply, and for the
    auth replies, the session timeout divided by `len(client.hosts)`: with one address,
    the whole session timeout, so one attempt routed to a dead endpoint outlasts the
    session. The connect string is kazoo's supported input; repeating an address is a
    fresh try of it, which a ClusterIP sends to another endpoint most of the time."""
    servers, slash, chroot = hosts.partition("/")
    addresses = [address.strip() for address in servers.split(",") if address.strip()]
    if not addresses or len(addresses) >= CONNECT_SHARE:
        return hosts
    repeats = -(-CONNECT_SHARE // len(addresses))  # ceiling division
    return ",".join(addresses * repeats) + slash + chroot


class _CappedConnectHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler with the TCP connect capped at `cap` seconds: kazoo asks
    for the whole session timeout (`_connect`: `timeout=client._session_timeout`), and a
    SYN to a crashed node's address is never answered. `handler` is a documented argument
    of KazooClient; `create_connection` is the one method we change."""

    def __init__(self, cap: float) -> None:
        super().__init__()
        self.cap = cap

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        if timeout is not None:
            kwargs["timeout"] = min(float(timeout), self.cap)
        return super().create_connection(*args, **kwargs)


def _tls_options(tls: ZkTls | None) -> dict[str, Any]:
    """kazoo's TLS arguments: the chain verified against `tls.ca` (kazoo also loads the
    system's CAs) and the server's name against the connect string's host, which kazoo
    also sends as SNI (`check_hostname`, kazoo >= 2.11); the client's certificate when
    given. kazoo's `command()` (four-letter words) does not work over TLS: not used."""
    if tls is None:
        return {}
    return {"use_ssl": True, "verify_certs": True, "check_hostname": True, "ca": tls.ca,
            "certfile": tls.cert, "keyfile": tls.key}


def session_for(config: Config) -> ZkSession:
    """The session an election of `config` runs on, not started yet."""
    return ZkSession(config.zk_hosts, config.session_timeout, zk_auth=config.zk_auth,
                     tls=config.zk_tls)


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
        tls: ZkTls | None = None,
    ) -> None:
        self.requested_timeout = session_timeout
        self.sends = SendLog(session_timeout)
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
        # Our own id in a digest ACL (`user:base64(sha1(user:password))`).
        self.digest_id = None if auth is None else make_digest_acl_credential(*auth)
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
            # nobody may delete or change (a group never does), so that no group, and
            # nobody else, can delete another group's leader record and make it anew.
            self._shared_acl = [make_acl("world", "anyone", read=True, create=True)]
            auth_data = [("digest", f"{auth[0]}:{auth[1]}")]
        self.client = KazooClient(
            hosts=_connect_string(hosts),
            timeout=session_timeout,
            handler=_CappedConnectHandler(session_timeout / CONNECT_SHARE),
            connection_retry=KazooRetry(
                max_tries=-1, delay=0.05, backoff=2, max_delay=2.0, max_jitter=0.2
            ),
            default_acl=acl,
            auth_data=auth_data,
            logger=_kazoo_logger(_KazooWiretap(self.sends, self._set_negotiated)),
            **_tls_options(tls),
        )
        self.client.add_listener(self._listener)

    # -- session ---------------------------------------------------------------------

    def _set_negotiated(self, seconds: float) -> None:
        self._negotiated = seconds
        self.sends.session_timeout = seconds

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

    def _answer(self, pending: Any) -> Any:
        """The answer of a request already sent (`_call` of an async result)."""
        return self._call(lambda: pending)

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

    def made_with_acls(
        self, nodes: list[tuple[str, bool]]
    ) -> list[tuple[list[AclEntry], int] | None]:
        """Each of `nodes` (path, shared) made unless it exists, parents first, with the
        group's ACL or, if shared, the shared one; then the ACL each has and its version
        (`aversion`), in one round trip. None for a node that could not be made (its
        parent is gone)."""
        for path, shared in nodes:
            self.client.create_async(path, acl=self._shared_acl if shared else None)
        reads = [self.client.get_acls_async(path) for path, _ in nodes]
        found: list[tuple[list[AclEntry], int] | None] = []
        for read in reads:
            try:
                acls, stat = self._answer(read)
            except NoNode:
                found.append(None)
                continue
            entries = [AclEntry(acl.id.scheme, acl.id.id, Perm(acl.perms)) for acl in acls]
            found.append((entries, int(stat.aversion)))
        return found

    def set_acl(self, path: str, acl: list[AclEntry], version: int) -> None:
        """Set the ACL of `path` if it is still at `version` (`aversion`); BadVersion is
        a ConnectionTrouble (somebody changed it meanwhile: judge it again)."""
        entries = [ACL(int(entry.perms), Id(entry.scheme, entry.id)) for entry in acl]
        self._call(lambda: self.client.set_acls_async(path, entries, version))

    def _ancestry(self, path: str) -> list[tuple[str, Any]]:
        """`path` and its ancestors below the root, top first, each with the ACL
        `ensure_path` gives it (None: the client's default)."""
        parts = path.strip("/").split("/")
        paths = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
        return [(p, self._shared_acl if p != path else None) for p in paths]

    def create_listed(
        self,
        parent: str,
        path_prefix: str,
        data: bytes,
        marker: tuple[str, bytes],
        stale: tuple[str, ...] = (),
    ) -> tuple[str, int, list[str] | None, list[str] | None]:
        """`create_pair` under `parent`, and the listings of `parent` and of the marker's
        folder, in one round trip instead of one per request: the creates of both folders
        and their ancestors (each may exist already: that error is ignored), the deletes
        of `stale` markers (each may be gone), the pair's transaction, the marker's stat
        (its czxid is the node's: one transaction) and the two listings go out back to
        back. ZooKeeper answers one session's requests in order, so the listings are
        served after the create, the markers' after the candidates'. Returns the node's
        path, its czxid and the listings (None where only a listing failed). NoNode if a
        folder could not be made: `ensure_path` then says why."""
        session = self.require_session()
        folder = marker[0].rsplit("/", 1)[0]
        sent = time.monotonic()
        for path, acl in self._ancestry(parent) + self._ancestry(folder)[-1:]:
            self.client.create_async(path, acl=acl)  # its answer comes first, unread
        for path in stale:
            self.client.delete_async(path)  # gone already is fine: unread
        created = self._pair(marker, path_prefix, data).commit_async()
        stat = self.client.exists_async(marker[0])
        listed = self.client.get_children_async(parent)
        markers = self.client.get_children_async(folder)
        node = self._created(self._call(lambda: created))
        self._record_answer(session, sent)
        czxid = self._call(lambda: stat)
        names: list[str] | None
        try:
            names = self._call(lambda: listed)
        except ZkError:
            names = None
        try:
            marker_names: list[str] | None = self._call(lambda: markers)
        except ZkError:
            marker_names = None
        if czxid is None:
            raise ConnectionTrouble(f"{marker[0]} gone right after its create")
        return node, int(czxid.czxid), names, marker_names

    def create_pair(
        self, marker: tuple[str, bytes], path_prefix: str, data: bytes
    ) -> tuple[str, int]:
        """An ephemeral `marker` and an EPHEMERAL_SEQUENTIAL node of `path_prefix`, in one
        transaction (both or neither): the node's path and czxid. A transaction is
        committed by a quorum like the lease's check transaction, so it anchors a lease
        too (`answered_send_time`)."""
        session = self.require_session()
        sent = time.monotonic()
        created = self._pair(marker, path_prefix, data).commit_async()
        stat = self.client.exists_async(marker[0])
        node = self._created(self._call(lambda: created))
        self._record_answer(session, sent)
        found = self._call(lambda: stat)
        if found is None:
            raise ConnectionTrouble(f"{marker[0]} gone right after its create")
        return node, int(found.czxid)

    def _pair(self, marker: tuple[str, bytes], path_prefix: str, data: bytes) -> Any:
        transaction = self.client.transaction()
        transaction.create(marker[0], marker[1], ephemeral=True)
        transaction.create(path_prefix, data, ephemeral=True, sequence=True)
        return transaction

    @staticmethod
    def _created(results: list[Any]) -> str:
        """The sequential node's path from the pair's results, or the error that failed it."""
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, RolledBackError):
                raise _translate(result)
        if any(isinstance(result, Exception) for result in results):
            raise ConnectionTrouble("transaction rolled back")
        return str(results[-1])

    def delete_pair(self, first: str, second: str, timeout: float | None = None) -> None:
        """Delete `first` and `second` in one transaction, `first` first; if either is
        gone already, delete the other alone. NoNode only if both are gone."""
        transaction = self.client.transaction()
        transaction.delete(first)
        transaction.delete(second)
        results = self._call(transaction.commit_async, timeout)
        if not any(isinstance(result, Exception) for result in results):
            return
        gone = 0
        for path in (first, second):
            try:
                self.delete(path, timeout)
            except NoNode:
                gone += 1
        if gone == 2:
            raise NoNode(second)

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
