"""The status board: the newest verdict of the election, and the thread that publishes it.

Three kinds of threads meet here, and none of them may block the others:

- kazoo's threads report session changes (`session_changed`): a leader must stop being
  leader *at once* when the connection is suspended, even while the election worker is
  stuck in a request. This only changes memory and wakes the writer.
- the election worker reports verdicts (`verdict`) stamped with the connection token it
  started from; a verdict computed before the latest session change is stale and dropped.
- the writer thread publishes the newest status: role files first (synchronously: they
  are the source of truth for the application), then every other publisher, which must
  return at once. A burst of changes is coalesced: only the newest status is written.
  A caller that must wait for a demotion anyway (`wait_demoted`) writes it itself when
  the writer is not busy, one thread handoff less on the way to the successor.

Guaranteed: the files never go backwards (a newer status is never overwritten by an older
one); a failed write is retried until it succeeds; a leader's status whose lease has
already run out is never published: it is withdrawn (`unknown`) instead. (A freeze between
that check and the file's rename can still write one, already expired: which is why an
application reads `lease_expires`, `lease` 4.) Not guaranteed: every intermediate
status reaches the files. A failure is logged once per kind (say, a full or read-only
file system), and once more when the files are written again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence

from .metrics import Metrics
from .rolefiles import RoleFiles
from .state import Role, RoleStatus, ZkState

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from .state import Publisher

log = logging.getLogger(__name__)

WRITE_RETRY_SECONDS = 0.5
BARRIER_SECONDS = 0.5  # the most a demotion waits for a publisher's write in flight


class StatusBoard:
    def __init__(
        self,
        initial: RoleStatus,
        files: RoleFiles | None,
        metrics: Metrics,
        publishers: Sequence[Publisher] = (),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._clock = clock
        self._status = initial.replace(since=clock())
        self._files = files
        self._metrics = metrics
        self._publishers = list(publishers)
        self._barriers: list[Callable[[float], bool]] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()  # one writer of the files at a time
        self._version = 0
        self._written = -1
        self._changed_at = time.monotonic()
        self._token = 0
        self._frozen = False
        self._stopping = False
        self._latest_lease: dt.datetime | None = None  # the latest lease ever published
        self._write_error: str | None = None  # the failure of the files last logged
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)

    # -- reading ---------------------------------------------------------------------

    def current(self) -> RoleStatus:
        with self._cond:
            return self._status

    @property
    def token(self) -> int:
        with self._cond:
            return self._token

    # -- writing (any thread; never blocks on I/O) -----------------------------------

    def add_publisher(self, publisher: Publisher) -> None:
        with self._cond:
            self._publishers.append(publisher)

    def add_demotion_barrier(self, barrier: Callable[[float], bool]) -> None:
        """`barrier(timeout)` is waited for by `wait_demoted`, after the files: the Kubernetes
        publisher's demoted label, before a successor may take over."""
        with self._cond:
            self._barriers.append(barrier)

    def _set(self, status: RoleStatus) -> None:
        """Caller holds the lock."""
        if status.role != self._status.role:
            status = status.replace(since=self._clock())
        if status == self._status:
            return
        if status.lease_expires is not None and (
            self._latest_lease is None or status.lease_expires > self._latest_lease
        ):
            self._latest_lease = status.lease_expires
        self._status = status
        self._version += 1
        self._changed_at = time.monotonic()
        self._cond.notify_all()

    def session_changed(self, zk: ZkState) -> None:
        """Connection state changed: every earlier verdict is void; role is unknown until the
        worker re-checks."""
        with self._cond:
            self._token += 1
            self._set(self._status.replace(role=Role.UNKNOWN, lease_expires=None, zk=zk))

    def verdict(
        self,
        token: int,
        role: Role,
        leader: str | None,
        epoch: int | None,
        lease_expires: dt.datetime | None = None,
    ) -> bool:
        with self._cond:
            if token != self._token or self._frozen:
                return False
            if role is Role.LEADER and self._ended(lease_expires):
                return False
            self._set(
                self._status.replace(
                    role=role, leader=leader, epoch=epoch, lease_expires=lease_expires,
                    zk=ZkState.CONNECTED,
                )
            )
            return True

    def renew(self, token: int, lease_expires: dt.datetime) -> bool:
        with self._cond:
            if token != self._token or self._frozen or self._status.role is not Role.LEADER:
                return False
            if self._ended(lease_expires):
                return False
            self._set(self._status.replace(lease_expires=lease_expires))
            return True

    def _ended(self, lease_expires: dt.datetime | None) -> bool:
        """A lease that has run out by the time it would be published is never published
        (`lease` 4.): a process that wakes from a freeze must not show `leader` again."""
        return lease_expires is None or lease_expires <= self._clock()

    def expire_lease(self, token: int) -> None:
        """The lease ran out without renewal: stop claiming leadership."""
        with self._cond:
            if token == self._token and self._status.role is Role.LEADER:
                self._token += 1
                self._set(self._status.replace(role=Role.UNKNOWN, lease_expires=None))

    def freeze(self) -> None:
        """Stopping or leaving: publish `unknown` and ignore every later verdict."""
        with self._cond:
            self._frozen = True
            self._token += 1
            self._set(self._status.replace(role=Role.UNKNOWN, lease_expires=None))

    def thaw(self) -> None:
        with self._cond:
            self._frozen = False
            self._token += 1

    @property
    def frozen(self) -> bool:
        with self._cond:
            return self._frozen

    def set_label_in_sync(self, in_sync: bool) -> None:
        with self._cond:
            self._set(self._status.replace(label_in_sync=in_sync))
        self._metrics.label_in_sync(in_sync)

    # -- the writer thread -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_written(self, timeout: float) -> bool:
        """Wait until the newest status is in the role files."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._written < self._version:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
            return True

    def wait_decided(self, timeout: float) -> bool:
        """Wait until the role is leader or follower (the election's first verdict)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._status.role is not Role.UNKNOWN or self._stopping, timeout
            )

    def wait_demoted(self, timeout: float) -> None:
        """Wait until the files say the newest (demoted) role, then for the demotion
        barriers (at most `BARRIER_SECONDS` each). If the files cannot be written in
        time, wait until every lease they may still show has run out: only then may the
        caller let a successor take over (delete the znode, close the session)."""
        if self._write_lock.acquire(timeout=timeout):
            try:
                self._write_pending()
            finally:
                self._write_lock.release()
        written = self.wait_written(timeout)
        log.debug("demotion in the role files: %s", written)
        with self._cond:
            barriers = list(self._barriers)
        for barrier in barriers:
            try:
                if not barrier(BARRIER_SECONDS):
                    log.warning("the demotion is not on the pod's label after %gs; the "
                                "successor takes over regardless", BARRIER_SECONDS)
            except Exception:  # a publisher's bug must not keep the znode
                log.exception("demotion barrier %r failed", barrier)
        if written:
            return
        with self._cond:
            latest = self._latest_lease
        if latest is None:
            return
        remaining = (latest - self._clock()).total_seconds()
        if remaining > 0:
            log.error("role files not written in %gs; waiting %.2fs for the lease to run out",
                      timeout, remaining)
            time.sleep(remaining)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._written >= self._version and not self._stopping:
                    self._cond.wait()
                if self._stopping and self._written >= self._version:
                    return
            with self._write_lock:
                written = self._write_pending()
            if not written:
                time.sleep(WRITE_RETRY_SECONDS)

    def _write_pending(self) -> bool:
        """Publish the newest status if it is not yet written; False if the files failed.
        Caller holds `_write_lock`, so that publishers see the statuses in order."""
        with self._cond:
            if self._status.role is Role.LEADER and self._ended(self._status.lease_expires):
                # Its lease ran out before the files got it (this thread or the process
                # stalled): withdraw it, as the worker would at the lease's end.
                self._token += 1
                self._set(self._status.replace(role=Role.UNKNOWN, lease_expires=None))
            if self._written >= self._version:
                return True
            version, status, changed_at = self._version, self._status, self._changed_at
            publishers = list(self._publishers)
        if not self._write_files(status):
            return False
        written_after = time.monotonic() - changed_at
        with self._cond:
            self._written = version
            self._cond.notify_all()
        self._metrics.published("files", written_after)
        self._metrics.observe(status)
        for publisher in publishers:
            try:
                publisher.publish(status)
            except Exception:  # a publisher must not stop the files
                log.exception("publisher %r failed", publisher)
        return True

    def _write_files(self, status: RoleStatus) -> bool:
        if self._files is None:
            return True
        try:
            self._files.write(status)
        except OSError as error:
            self._metrics.publish_failed("files", "oserror")
            reason = error.strerror or type(error).__name__
            if reason != self._write_error:  # one line per kind of failure, no log storm
                self._write_error = reason
                log.error("cannot write role files in %s: %s; retrying every %gs",
                          self._files.directory, error, WRITE_RETRY_SECONDS)
            return False
        if self._write_error is not None:
            self._write_error = None
            log.info("role files written again in %s: role %s", self._files.directory,
                     status.role.value)
        return True
