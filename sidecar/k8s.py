"""The Kubernetes face of one sidecar (requests through `kubeapi`, the one HTTP client).

It gives:

- `api_connection(config)`: where and how to reach the API (`kubeapi.load_connection`:
  `--kubeconfig` if given, else in-cluster inside a pod, else `KUBECONFIG`/
  `~/.kube/config`), also for kopf's login; `core_api(config)` a client of its own (so
  several sidecars can share a process).
- `KubernetesPublisher`: a `Publisher` that puts the role on the own pod (label
  `<role_label>=leader|follower|unknown`, annotations `leader-election/epoch` and
  `leader-election/leader`) and posts Events (`Elected`, `Demoted`, `SteppedDown`).
- `list_group_pods(config)`: the group's pods with their role label and annotations, for
  `leader-sidecar status --kubernetes`.

The `leader` label is exclusive (sidecar/labelgate.py): before it is written, every other
pod of the group that says leader is relabelled `follower` (conditionally), a newer
leader's label makes this one wait instead, and it is never sent on a lease that has run
out. `wait_label_demoted()` is what a leaving leader waits for before its znode goes.
A change of the annotations alone (a follower learning the new leader) and the Events
wait `DEFER_SECONDS`, so that a handover's burst of API writes is the two labels only.

Guaranteed: `publish()` returns at once and never raises; it only records the newest status
and wakes the publisher's own worker thread. The worker coalesces (whatever arrived while a
request was in flight, only the newest role is written next; an older one is never written
after a newer one, and `restore()`, the operator's "someone edited the label", rewrites the
newest recorded state rather than one the operator read), retries failed requests with
capped exponential backoff and full jitter, and logs a failure once per kind of failure
(again only when the kind changes, and once when it recovers). Nothing here can block or
fail the election or the role files: a dead API only leaves the label stale, and
`on_label_sync(False)` says so.

Every patch of the own pod carries the pod's uid (`metadata.uid`, learnt from the first
patch's reply) as a precondition: after a forced delete, a pod of the same name made by the
StatefulSet belongs to a sidecar of its own, and the apiserver refuses a patch whose uid is
not the pod's (422: `metadata.uid` is immutable), changing nothing. The publisher then
stops writing labels for good (one log line): the new pod's label is never overwritten by
the old container's last `unknown`.

Events are aggregated and limited as client-go's recorder does: a repeat of an Event
(same pod, reason, message and type) within `kubeevents.AGGREGATE_WINDOW` patches the count and
`lastTimestamp` of the one posted instead of posting another, and each involved pod and
reason gets at most `SPAM_BURST` posts or counts, then one per `SPAM_REFILL` seconds (a
flapping link cannot post thousands an hour); what the limit drops is counted
(`reason="rate_limited"`).

Not guaranteed: that the label is right at any given instant (it lags the election by one
API round trip, or by the outage; a follower's annotations by `DEFER_SECONDS` more); that
every Event is posted (Events are best effort: kept and retried through transient faults,
401 included since a rotated token is read again, dropped on permanent ones such as 403,
at most `MAX_PENDING_EVENTS` kept, and dropped by the rate limit); exactly-once Events (a
retried create whose reply was lost may post twice). Merge patches carry no
resourceVersion, so another writer of the same label (a user, a stale peer) can win until
the operator (sidecar/operator.py) restores it.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import http.client
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import Config
from .kubeapi import (
    ApiConnection,
    ApiError,
    KubeApi,
    load_connection,
)
from .kubeevents import EventLimiter, PendingEvent, event_body
from .labelgate import Gate, LeaderLabelGate
from .metrics import Metrics
from .state import Role, RoleStatus

log = logging.getLogger(__name__)

GROUP_LABEL = "leader-election/name"
EPOCH_ANNOTATION = "leader-election/epoch"
LEADER_ANNOTATION = "leader-election/leader"
STEP_DOWN_ANNOTATION = "leader-election/step-down"
ELECTED, DEMOTED, STEPPED_DOWN = "Elected", "Demoted", "SteppedDown"
STALE_LEADER = "StaleLeaderLabel"  # another pod's leader label, relabelled to follower
PUBLISHER = "kubernetes"  # the `publisher` label value of the shared metrics
MAX_PENDING_EVENTS = 32
# A handover's burst of API requests is the leaders' label patches only: a change of the
# annotations alone (a follower learning the new leader) and Events wait this long, and
# go as one request each when a burst of changes came meanwhile. The API server of a
# small cluster answers a lone patch in a few ms and the same patch in tens of ms when a
# dozen others arrive with it (measured on the local control plane: docs/benchmarks.md).
DEFER_SECONDS = 0.25


class KubernetesApiError(Exception):
    """A request of `list_group_pods` failed; the message is one line for the CLI."""


# --- client construction --------------------------------------------------------------------


def api_connection(config: Config) -> ApiConnection:
    return load_connection(config.kubeconfig)


def core_api(config: Config, timeout: tuple[float, float] = (2.0, 5.0)) -> KubeApi:
    return KubeApi(api_connection(config), timeout)


# --- failures -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failed request, classified: `reason` is the metric label, `permanent` means
    retrying the same request cannot help until someone changes something (RBAC, pod)."""

    reason: str
    detail: str
    permanent: bool = False
    message: str = ""  # the API server's own words (a Status body's `message`)


def classify(error: BaseException) -> Failure:
    if isinstance(error, ApiError):
        status = error.status
        text = f"HTTP {status} {error.reason or ''}".strip()
        if status == 403:
            return Failure("forbidden", text, permanent=True, message=str(error))
        if status == 401:
            # The token expired or was rotated: the next request reads it again, so a
            # retry can succeed (a kept Event is not dropped for it).
            return Failure("unauthorized", text)
        if status == 404:
            return Failure("not_found", text, permanent=True)
        if status in (409, 422) and _refused_uid(str(error)):
            return Failure("replaced", text, permanent=True, message=str(error))
        if status == 409:
            return Failure("conflict", text)
        if status == 429:
            return Failure("throttled", text)
        if status >= 500:
            return Failure("server_error", text)
        return Failure("rejected", text, permanent=True)
    if isinstance(error, TimeoutError):
        return Failure("timeout", type(error).__name__)
    if isinstance(error, http.client.HTTPException | OSError):
        cause = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return Failure("unreachable", str(cause).split(": ")[-1][:200])
    return Failure("error", f"{type(error).__name__}: {error}"[:200])


def explain(failure: Failure, verb: str, resource: str, namespace: str, name: str | None) -> str:
    """One log line a person can act on."""
    account = _SERVICE_ACCOUNT_RE.search(failure.message)
    if failure.reason == "forbidden" and account and account.group(1) != namespace:
        # A namespaced Role grants nothing elsewhere, and a namespace that does not exist
        # answers 403 too: the namespace is wrong, not the Role.
        return (
            f"forbidden: the sidecar's ServiceAccount (namespace {account.group(1)!r}) may "
            f"not {verb} {resource!r} in namespace {namespace!r}: POD_NAMESPACE must be the "
            "pod's own namespace (downward API metadata.namespace) and exist; retrying with "
            "backoff"
        )
    if failure.reason == "forbidden":
        return (
            f"forbidden: the sidecar's ServiceAccount needs {verb!r} on {resource!r} in "
            f'namespace {namespace!r} (a Role rule: apiGroups [""], resources '
            f'["{resource}"], verbs ["{verb}"]); retrying slowly until it has it'
        )
    if failure.reason == "not_found" and resource == "pods":
        return (
            f"own pod {name!r} not found in namespace {namespace!r}: POD_NAME and "
            "POD_NAMESPACE must come from the downward API (metadata.name, "
            "metadata.namespace); retrying slowly"
        )
    if failure.reason == "unauthorized":
        return "unauthorized: the API server rejected the sidecar's credentials; retrying"
    what = f"{verb} {resource}" + (f" {name!r}" if name else "") + f" in {namespace!r}"
    return (
        f"Kubernetes API: {what} failed ({failure.reason}: {failure.detail}); retrying with backoff"
    )


_SERVICE_ACCOUNT_RE = re.compile(r'User "system:serviceaccount:([^:"]+):')


def _refused_uid(message: str) -> bool:
    """The apiserver's words for a patch whose `metadata.uid` is not the object's: 422
    "metadata.uid: Invalid value: ...: field is immutable" (kube-apiserver 1.37), or the
    409 "Precondition failed: UID in precondition" of a DELETE-style precondition."""
    return ("metadata.uid" in message and "immutable" in message) or (
        "UID in precondition" in message)


class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog style): a crowd
    of sidecars that lost the API together does not come back in lockstep."""

    def __init__(self, base: float = 0.1, cap: float = 3.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


# --- the publisher ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Wanted:
    """What the own pod should show: only what the label/annotations carry, so that a lease
    renewal (same role, same epoch) causes no API request at all."""

    role: Role
    epoch: int | None
    leader: str | None

    @classmethod
    def of(cls, status: RoleStatus) -> Wanted:
        return cls(status.role, status.epoch, status.leader)

    def shown(self) -> tuple[str, str | None, str | None]:
        """(role label, epoch annotation, leader annotation) as the pod shows them."""
        return (self.role.value, str(self.epoch) if self.epoch is not None else None,
                self.leader)

    def patch(self, role_label: str, uid: str | None = None) -> dict[str, Any]:
        """The merge patch; with `uid`, a precondition: only the pod of that uid."""
        metadata: dict[str, Any] = {
            "labels": {role_label: self.role.value},
            # null removes an annotation (merge patch): no stale epoch/leader while unknown.
            "annotations": {
                EPOCH_ANNOTATION: str(self.epoch) if self.epoch is not None else None,
                LEADER_ANNOTATION: self.leader,
            },
        }
        if uid:
            metadata["uid"] = uid
        return {"metadata": metadata}


class KubernetesPublisher:
    """Publishes the role on the own pod; see the module docstring for the guarantees.

    The worker thread starts in the constructor and runs until `stop()`.
    """

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        on_label_sync: Callable[[bool], None],
        *,
        api: KubeApi | None = None,
        backoff: Backoff | None = None,
        request_timeout: tuple[float, float] = (2.0, 5.0),
    ) -> None:
        if config.namespace is None:
            raise ValueError("the Kubernetes publisher needs the pod's namespace")
        self.pod = config.identity
        self.namespace: str = config.namespace
        self.role_label = config.role_label
        self.election = config.election
        self._api = api if api is not None else core_api(config, request_timeout)
        self._metrics = metrics
        self._on_label_sync = on_label_sync
        self._backoff = backoff or Backoff()
        self._timeout = request_timeout
        self._cond = threading.Condition()
        # All below is guarded by _cond.
        self._wanted: Wanted | None = None
        self._wanted_since: float | None = None  # arrival of the oldest status not yet written
        self._written: Wanted | None = None
        self._force = False  # someone changed the label behind our back: write even if equal
        self._events: collections.deque[PendingEvent] = collections.deque(maxlen=MAX_PENDING_EVENTS)
        self._last_role: Role | None = None
        self._last_epoch: int | None = None
        self._wake = False
        self._stopping = False
        self._busy = False
        self._pod_uid: str | None = None
        self._replaced = False  # the own pod's name now belongs to another pod (uid)
        self._lease: dt.datetime | None = None  # of the newest status, when it says leader
        self._writing: Role | None = None  # the role of the own-pod patch in flight
        self._deferred_until: float | None = None  # when deferred work is due (monotonic)
        self._flushing = False  # stopping: nothing is deferred any more
        self._failures = 0  # own-pod patches that failed, ever
        # Touched by the worker thread only.
        self._limiter = EventLimiter()
        self._gate = LeaderLabelGate(self._api, self.namespace, self.pod,
                                     f"{GROUP_LABEL}={self.election}", self.role_label,
                                     EPOCH_ANNOTATION)
        self._admitted: PendingEvent | None = None  # let through the rate limit, not posted yet
        self._in_sync: bool | None = None
        self._logged: dict[str, str | None] = {}  # operation -> reason last logged
        self._thread = threading.Thread(
            target=self._run, name=f"k8s-publisher-{self.pod}", daemon=True
        )
        self._thread.start()

    # ---- the Publisher protocol and what the operator may call

    def publish(self, status: RoleStatus) -> None:
        try:
            with self._cond:
                if self._stopping:
                    return
                self._record_transition(status)
                lease = status.lease_expires if status.role is Role.LEADER else None
                if lease != self._lease and lease is not None and self._written != self._wanted:
                    self._wake = True  # a renewal: a `leader` refused on the old lease may go
                    self._cond.notify_all()
                self._lease = lease
                self._set_wanted(Wanted.of(status))
        except Exception:  # the contract: never raise into the election
            log.exception("Kubernetes publisher: dropping a status it could not record")

    def restore(self) -> None:
        """Someone edited the label: write the newest wanted state again, even if we think
        it is already there. It takes no status on purpose: a status the caller read may
        be older than one `publish()` recorded meanwhile, and must not be written over it."""
        with self._cond:
            if self._stopping or self._wanted is None:
                return  # nothing published yet: the first `publish()` writes the label
            self._force = True
            self._set_wanted(self._wanted)

    def post_event(
        self,
        reason: str,
        message: str,
        *,
        type: str = "Normal",
        pod: str | None = None,
        uid: str | None = None,
    ) -> None:
        """Queue an Event on the own pod (or another pod of the namespace); never blocks."""
        event = PendingEvent(reason, message, type, dt.datetime.now(dt.UTC), pod or self.pod, uid)
        with self._cond:
            if not self._stopping:
                self._events.append(event)
                self._wake = True
                self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until the newest status is on the pod and the queued Events are posted,
        deferring nothing meanwhile. False on timeout (the API is down or forbidden): the
        caller goes on regardless."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing = True
            self._wake = True
            self._cond.notify_all()
            try:
                while not self._settled():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stopping:
                        return self._settled()
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushing = False

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the worker and wait for it; bounded by one request timeout (a request in
        flight cannot be interrupted). True if the worker has ended."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        bound = timeout if timeout is not None else sum(self._timeout) + 1.0
        self._thread.join(bound)
        if self._thread.is_alive():
            log.warning("Kubernetes publisher: worker still in a request after %.1fs", bound)
            return False
        self._api.close()
        return True

    def written(self) -> Wanted | None:
        """What the last successful patch put on the own pod (None before the first)."""
        with self._cond:
            return self._written

    def wait_label_demoted(self, timeout: float) -> bool:
        """Wait (bounded) until the own pod's label no longer says leader: the demotion has
        reached this publisher, no `leader` patch is in flight (none is sent after it: each
        is checked against the newest status just before it goes), and the patch of the
        new role was answered. A leaving or stepping-down leader waits for this (through
        the status board) before its znode goes, so that its successor finds the label
        off already and labels itself at once (sidecar/labelgate.py); one API round trip
        on the way to the successor. Once a patch tried after this call has failed (the API
        away), only a `leader` patch in flight is waited for: a dead API must not hold the
        handover. False if the bound ran out."""
        def demoted() -> bool:
            if self._stopping or self._replaced:
                return True
            if self._wanted is not None and self._wanted.role is Role.LEADER:
                return False
            if self._writing is Role.LEADER:
                return False
            written_leader = self._written is not None and self._written.role is Role.LEADER
            # A failure counts only if it came after this call: an old one says nothing
            # about the API now.
            return not written_leader or self._failures > failures_before

        with self._cond:
            failures_before = self._failures
            self._wake = True  # nothing deferred on the way
            self._cond.notify_all()
            return self._cond.wait_for(demoted, timeout)

    @property
    def label_in_sync(self) -> bool | None:
        return self._in_sync

    # ---- bookkeeping under the lock

    def _set_wanted(self, wanted: Wanted) -> None:
        if wanted == self._wanted and not self._force:
            return  # a lease renewal: nothing the pod shows has changed
        self._wanted = wanted
        if wanted == self._written and not self._force:
            self._wanted_since = None
        elif self._wanted_since is None:
            self._wanted_since = time.monotonic()
        self._wake = True
        self._cond.notify_all()

    def _record_transition(self, status: RoleStatus) -> None:
        """Events come from the sequence of statuses, not from what reached the pod, so a
        flap that the label coalesced away is still visible in `kubectl describe`."""
        became_leader = status.role is Role.LEADER and (
            self._last_role is not Role.LEADER or status.epoch != self._last_epoch
        )
        left_leader = self._last_role is Role.LEADER and status.role is not Role.LEADER
        now = dt.datetime.now(dt.UTC)
        if became_leader:
            self._events.append(
                PendingEvent(
                    ELECTED,
                    f"became leader of election {self.election!r} (epoch {status.epoch})",
                    "Normal",
                    now,
                    self.pod,
                )
            )
        elif left_leader:
            self._events.append(
                PendingEvent(
                    DEMOTED,
                    f"no longer leader of election {self.election!r}: now "
                    f"{status.role.value} (leader: {status.leader or 'unknown'})",
                    "Normal",
                    now,
                    self.pod,
                )
            )
        self._last_role, self._last_epoch = status.role, status.epoch

    def _settled(self) -> bool:
        return (
            not self._events
            and not self._busy
            and (self._replaced or (not self._force and self._wanted == self._written))
        )

    # ---- the worker

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug: say so loudly, the election carries on without the label
            log.exception(
                "Kubernetes publisher: worker crashed; the role label is no longer updated"
            )

    def _loop(self) -> None:
        delay = 0.0
        while True:
            with self._cond:
                retry_at = time.monotonic() + delay if delay else None
                while not self._stopping and not self._wake:
                    due = min((t for t in (retry_at, self._deferred_until) if t is not None),
                              default=None)
                    if due is not None and self._due(due):
                        break
                    self._cond.wait(None if due is None else max(0.0, due - time.monotonic()))
                if self._stopping:
                    return
                self._wake = False
                self._deferred_until = None
                self._busy = True
            try:
                ok = self._write_label() and self._post_events()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if ok:
                self._backoff.reset()
                delay = 0.0
            else:
                delay = self._backoff.next_delay()

    @staticmethod
    def _due(deadline: float) -> bool:
        return time.monotonic() >= deadline

    def _write_label(self) -> bool:
        with self._cond:
            wanted, since, force = self._wanted, self._wanted_since, self._force
            if self._replaced or wanted is None or (wanted == self._written and not force):
                return True
            if self._defer_annotations(wanted, since, force):
                return True
            uid = self._pod_uid
        self._set_in_sync(False)
        if wanted.role is Role.LEADER and not self._may_label_leader(wanted):
            return False  # tried again after a backoff, or sooner with a newer status
        with self._cond:
            if wanted != self._wanted:
                return True  # a newer status arrived meanwhile (it woke the worker)
            if wanted.role is Role.LEADER and not self._lease_left():
                return False  # the lease ran out meanwhile: its demotion is on the way
            self._force = False
            self._writing = wanted.role
        sent = time.monotonic()
        try:
            pod = self._api.patch_pod(self.namespace, self.pod, wanted.patch(self.role_label, uid))
        except Exception as error:
            with self._cond:
                self._writing = None
                self._failures += 1
                self._cond.notify_all()
                self._force = self._force or force
            failure = self._failed("patch", "pods", self.pod, error)
            if failure.reason == "replaced":
                with self._cond:
                    self._replaced = True
                    self._cond.notify_all()
                return True  # nothing more to write, ever: the name is another pod's
            return False
        self._succeeded("patch")
        log.debug("own pod labelled %s in %.1f ms", wanted.role.value,
                  (time.monotonic() - sent) * 1000)
        metadata = (pod or {}).get("metadata") or {}
        labels = metadata.get("labels") or {}
        with self._cond:
            self._writing = None
            self._written = wanted
            self._pod_uid = metadata.get("uid")
            current = self._wanted == wanted and not self._force
            if current:
                self._wanted_since = None
            self._cond.notify_all()
        if current and since is not None:
            self._metrics.published(PUBLISHER, time.monotonic() - since)
        self._set_in_sync(current and labels.get(self.role_label) == wanted.role.value)
        return True

    def _defer_annotations(self, wanted: Wanted, since: float | None, force: bool) -> bool:
        """Caller holds the lock: a change of the annotations alone waits `DEFER_SECONDS`
        from the first status not yet written (True: not now; the loop comes back)."""
        same_role = self._written is not None and self._written.role is wanted.role
        if force or self._flushing or not same_role or since is None:
            return False
        due = since + DEFER_SECONDS
        if time.monotonic() >= due:
            return False
        self._defer(due)
        return True

    def _defer(self, due: float) -> None:
        """Caller holds the lock: come back at monotonic `due` at the latest."""
        if self._deferred_until is None or due < self._deferred_until:
            self._deferred_until = due

    def _may_label_leader(self, wanted: Wanted) -> bool:
        """The lease holds and no other pod of the group says leader any more
        (sidecar/labelgate.py); False to try again later."""
        with self._cond:
            if not self._lease_left():
                return False  # a demotion is on its way (or a renewal, which re-checks)
        outcome = self._gate.clear(wanted.epoch)
        for name, uid, theirs in self._gate.relabelled:
            # Its own sidecar did not take it off (crashed, frozen, cut off from the API).
            self.post_event(
                STALE_LEADER,
                f"role label said leader (epoch {theirs}), but {self.pod!r} is the leader "
                f"of election {self.election!r} (epoch {wanted.epoch}): relabelled to "
                "follower before labelling the new leader",
                type="Warning", pod=name, uid=uid)
        if outcome is Gate.FAILED and self._gate.error is not None:
            self._failed(self._gate.verb, "pods", self._gate.failed_pod, self._gate.error)
        elif outcome is Gate.CLEAR:
            self._succeeded("list")
        return outcome is Gate.CLEAR

    def _lease_left(self) -> bool:
        """Caller holds the lock: the newest leader status's lease has not run out."""
        return self._lease is not None and self._lease > dt.datetime.now(dt.UTC)

    def _post_events(self) -> bool:
        while True:
            with self._cond:
                if not self._events or self._stopping:
                    return True
                if not self._replaced and (self._wanted != self._written or self._force):
                    if self._deferred_until is None:
                        self._wake = True  # the label first: Events wait one request more
                    return True
                due = self._events[0].queued + DEFER_SECONDS
                if not self._flushing and time.monotonic() < due:
                    self._defer(due)
                    return True
                event, uid = self._events[0], self._pod_uid
            try:
                self._post(event, uid)
            except Exception as error:
                failure = self._failed("create", "events", None, error)
                if not failure.permanent:
                    return False
                # 403/404/422 would fail again and again: drop it, keep the label going.
            else:
                self._succeeded("create")
            with self._cond:
                if self._events and self._events[0] is event:
                    self._events.popleft()
                self._cond.notify_all()

    def _post(self, event: PendingEvent, own_uid: str | None) -> None:
        """Post `event`, or count it on the Event it repeats; the rate limit drops it."""
        now = time.monotonic()
        if event is not self._admitted:  # once per Event: its retries take no more tokens
            if not self._limiter.allow(event, now):
                self._metrics.publish_failed(PUBLISHER, "rate_limited")
                log.debug("Event %s on pod %r dropped by the rate limit", event.reason, event.pod)
                return
            self._admitted = event
        previous = self._limiter.repeat_of(event, now)
        if previous is not None:
            stamp = event.when.strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                self._api.patch_event(self.namespace, previous.name,
                                      {"count": previous.count + 1, "lastTimestamp": stamp})
            except ApiError as error:
                if error.status != 404:
                    raise
                # Gone (Events live an hour by default): post it afresh below.
            else:
                self._limiter.posted(event, previous.name, previous.count + 1, now)
                return
        body = event_body(event, self.namespace, self.pod, own_uid)
        self._api.create_event(self.namespace, body)
        self._limiter.posted(event, body["metadata"]["name"], 1, now)

    # ---- reporting (worker thread only)

    def _failed(self, verb: str, resource: str, name: str | None, error: BaseException) -> Failure:
        failure = classify(error)
        self._metrics.publish_failed(PUBLISHER, failure.reason)
        if self._logged.get(verb) != failure.reason:  # no storm: once per kind of failure
            self._logged[verb] = failure.reason
            level = logging.ERROR if failure.permanent else logging.WARNING
            with self._cond:
                known_uid = self._pod_uid
            if failure.reason == "not_found" and resource == "pods" and known_uid:
                # It was there (we wrote it): deleted, not misnamed.
                message = (f"own pod {name!r} (uid {known_uid}) was deleted from namespace "
                           f"{self.namespace!r}; retrying slowly until a pod of that name "
                           "exists, which is then another pod: the labels are not written")
            elif failure.reason == "replaced":
                message = (f"own pod {name!r} (uid {known_uid}) was deleted and a new pod of "
                           "that name made: no longer writing its role label (the new pod "
                           "has a sidecar of its own)")
            elif failure.reason == "forbidden" and resource == "pods":
                message = (explain(failure, verb, resource, self.namespace, name)
                           + f" (or {name!r} is beyond the chart's app.maxReplicas: not "
                           "in the Role's resourceNames)")
            else:
                message = explain(failure, verb, resource, self.namespace, name)
            log.log(level, "%s", message)
        return failure

    def _succeeded(self, verb: str) -> None:
        if self._logged.get(verb) is not None:
            log.info("Kubernetes API: %s works again", verb)
        self._logged[verb] = None

    def _set_in_sync(self, value: bool) -> None:
        if value == self._in_sync:
            return
        self._in_sync = value
        self._metrics.label_in_sync(value)
        try:
            self._on_label_sync(value)
        except Exception:  # a listener must not stop the publisher
            log.exception("Kubernetes publisher: on_label_sync listener failed")


# --- the group, for `leader-sidecar status --kubernetes` ----------------------------------------


@dataclasses.dataclass(frozen=True)
class PodRole:
    name: str
    role_label: str | None
    epoch: int | None
    leader_annotation: str | None

    def agrees_with(self, zk_leader: str | None) -> bool:
        """The label agrees with ZooKeeper when exactly the leader's pod says `leader`."""
        return (self.role_label == Role.LEADER.value) == (
            zk_leader is not None and self.name == zk_leader
        )


def list_group_pods(config: Config, *, timeout: float = 10.0) -> list[PodRole]:
    """The pods labelled `leader-election/name=<election>` in the namespace, by name.

    Raises `KubernetesConfigError` or `KubernetesApiError` (one-line messages)."""
    namespace = config.namespace or "default"
    api = core_api(config, (timeout, timeout))
    try:
        pods = api.list_pods(namespace, f"{GROUP_LABEL}={config.election}")
    except Exception as error:
        failure = classify(error)
        raise KubernetesApiError(
            explain(failure, "list", "pods", namespace, None)
            .replace("; retrying slowly until it has it", "")
            .replace("; retrying with backoff", "")
        ) from None
    finally:
        api.close()
    items = (pods or {}).get("items") or []
    return sorted((_pod_role(pod, config.role_label) for pod in items), key=lambda p: p.name)


def _pod_role(pod: dict[str, Any], role_label: str) -> PodRole:
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    raw_epoch = annotations.get(EPOCH_ANNOTATION)
    try:
        epoch = int(raw_epoch) if raw_epoch is not None else None
    except ValueError:
        epoch = None
    return PodRole(
        metadata.get("name", ""), labels.get(role_label), epoch, annotations.get(LEADER_ANNOTATION)
    )
