"""Operator-style reconciliation of the group's pods with kopf: the only module importing kopf.

kopf runs in the sidecar's process, on a thread of its own with its own asyncio loop, with
its own `OperatorRegistry` and settings (so several sidecars can share a process), watching
only the pods labelled `leader-election/name=<election>` in the own namespace. It:

(a) restores the own role label and the epoch and leader annotations when someone edits
    them (through the publisher, which owns them and their retries);
(b) while this candidate is the leader, relabels every other pod of the group that still
    says `leader` to `follower` and posts a `StaleLeaderLabel` Event on it; a pod whose
    epoch annotation is newer than ours is left alone (then *we* are the stale one);
(c) on the annotation `leader-election/step-down` on the own pod: if leader, asks the
    election to step down and posts `SteppedDown`; a moment later (off the way to the
    successor) removes it, from the pod as last seen and with its resourceVersion as the
    precondition, if it still says the value acted on (a second annotation written
    meanwhile is a new request, acted on with its event, never removed unseen). A
    removal that failed is tried again with backoff; events that still show the value
    acted on do not act twice;
(d) once the own pod is marked for deletion (`deletionTimestamp`), or deleted at once
    (`--force --grace-period=0`), leaves the election at once (posting `LeavingOnDelete`):
    a successor takes over while the application drains, whatever order the kubelet stops
    the containers in (a native sidecar stops last) and without any request from outside
    the pod. The chart's `sleep` preStop hook on the application gives this watch event
    its time. Having left, it no longer restores the label of a pod of the same name (a
    StatefulSet's next incarnation, with a sidecar of its own). A DELETED of the own pod
    is confirmed with a GET first: the apiserver sends DELETED too when a pod merely
    stops matching the watch's label selector (its group label edited or removed), and
    such a pod, still there, stays in the election (the edit is logged; its labels are
    restored again once the group label is back).

The group's pods are tracked by uid, not by name: a pod of the same name made after a
forced delete replaces the old one, a late DELETED (or any late event) of an old uid
changes nothing, and after every listing (kopf lists again after an outage or a 410, and
sends no DELETED for a pod deleted meanwhile) the group is checked against a list of its
pods, so that no ghost stays behind. The relabels of (b) that a change of the own pod
calls for (a sweep) run on the relabel timer's thread, never in the own pod's handler,
so that nothing delays the leave on deletion of (d).

A relabel in (b) that fails for any reason but a conflict (409: the pod changed, and its
newer version comes with the watch) or a 404 is tried again on a timer of its own, with
capped exponential backoff and full jitter, judged afresh each time on the pod's newest
known state: the pod of a crashed or partitioned old leader may send no event for a minute
or more (until its node is NotReady), and the leader Service routes to it meanwhile.

What kopf does for us: the list-then-watch of the group's pods with reconnection and
backoff, server-side label filtering (`settings.watching.label_selectors`) plus the
handlers' client-side `labels=` filter, per-pod serialisation and batching of bursts of
watch events, applying the handler's `patch` (a merge patch) to the handled pod, posting
Events (`kopf.event`, queued and retried by kopf; it works for any object body, but only
inside the operator's context: from handlers), and the login handshake re-run on 401.

What it must not do here, and is configured not to: peering (`standalone`), cluster-wide
scanning of namespaces and CRDs (`scanning.disabled`, one namespace given), and writing its
state onto pods: only `@kopf.on.event` handlers are registered, which keep no progress or
diff-base annotations and add no finalizer (timers and daemons would add one, so there are
none); handler log lines are not posted as Events (`posting.level`).

Guaranteed: handlers never block on the election (`ElectionControl` calls are
non-blocking) and never raise into kopf for expected conditions. `OperatorHandle.stop()`
sets kopf's stop flag and joins the thread with a bound. If kopf itself ends with an error
(say, the API was unreachable for longer than its retries), it is started again after a
pause. Not guaranteed: reaction time (one watch round trip; nothing happens while the API
is down, and everything is re-checked from the fresh listing once it is back); leaving on
a DELETED whose GET fails for about two seconds (the sidecar then stays in the election:
a label edit must never make it leave, and a pod really being deleted is stopped by the
kubelet anyway); relabels while the pod is out of the watch's selector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import kopf

from .config import Config, shown
from .k8s import (
    EPOCH_ANNOTATION,
    GROUP_LABEL,
    LEADER_ANNOTATION,
    STALE_LEADER,
    STEP_DOWN_ANNOTATION,
    STEPPED_DOWN,
    KubernetesPublisher,
    api_connection,
    classify,
    core_api,
)
from .kubeapi import ApiError
from .podgroup import PodGroup, uid_of
from .retrytimer import RetryTimer
from .state import Role, RoleStatus

if TYPE_CHECKING:
    from .state import ElectionControl

log = logging.getLogger(__name__)

LEAVING_ON_DELETE = "LeavingOnDelete"
RESTART_PAUSE = 2.0  # between kopf runs that ended with an error
STOP_GRACE = 1.0  # for kopf to stop by its flag before it is cancelled
TLS_CLOSE_PAUSE = 0.25
SHOWN_VALUE_CHARACTERS = 80  # of an annotation's value (up to 256 KiB) in an Event
CONFIRM_PAUSES = (0.2, 0.5, 1.0)  # between GETs of the own pod that failed, after a DELETED
RETRY_JOIN = 1.0  # for the relabel timer's thread to end on close
# The timer's keys besides pod names (no pod name has "/"): the check after a listing,
# the step-down annotation's removal, the check of an own label unlike the one written.
RESYNC, STEP_DOWN, RESTORE = "/resync", "/step-down", "/restore"
REMOVAL_DELAY = 0.25  # seconds after a step-down request is acted on
RESTORE_DELAY = 0.2  # seconds an own label unlike the one written may be an older event
RESYNC_DELAY = 1.0  # after the last listed pod: kopf's listing comes in chunks

PodState = Literal["deleted", "deleting", "present", "unknown"]


class Reconciler:
    """The behaviours (a) to (d), free of kopf so that each is a small function."""

    def __init__(
        self, config: Config, control: ElectionControl, publisher: KubernetesPublisher
    ) -> None:
        self.config = config
        self.control = control
        self.publisher = publisher
        self.group = PodGroup()
        self._api = core_api(config)
        self._left_on_delete = False
        self._relabel_logged: dict[str, str] = {}  # pod -> failure reason logged last
        self._step_down_seen: str | None = None  # the value acted on, until it is gone
        self._step_down_removed = False  # ... and our removal of it succeeded
        self._timer = RetryTimer(self._on_timer, f"relabel-{config.identity}")

    def close(self) -> None:
        self._timer.close(RETRY_JOIN)
        self._api.close()

    def on_pod(self, event_type: str | None, body: Mapping[str, Any], patch: Any) -> None:
        name = body.get("metadata", {}).get("name", "")
        if not self.group.update(body, deleted=event_type == "DELETED"):
            log.debug("late event of pod %r (uid %s), deleted or replaced since: ignored",
                      name, uid_of(body))
            return
        if event_type is None:  # a listing: a relist may have missed a DELETED
            self._timer.soon(RESYNC, RESYNC_DELAY)
        if event_type == "DELETED":
            if name == self.config.identity:
                self.own_pod_gone(body)
            return
        if name == self.config.identity:
            self.own_pod(body, patch, listed=event_type is None)
            self.sweep()  # e.g. we just became leader: our own label change brings us here
        else:
            self.other_pod(body)

    def own_pod(self, body: Mapping[str, Any], patch: Any, listed: bool = False) -> None:
        metadata = body.get("metadata", {})
        if metadata.get("deletionTimestamp"):
            self.leave_on_delete()
            return
        if self._left_on_delete:
            # A pod of the same name made after ours was deleted (a StatefulSet's next
            # incarnation) belongs to a sidecar of its own: never fight it for the label.
            return
        annotations = metadata.get("annotations") or {}
        if STEP_DOWN_ANNOTATION in annotations:
            self.step_down(annotations[STEP_DOWN_ANNOTATION], listed)
        else:
            self._step_down_seen = None  # removed (by us or anyone): a new request is new
        if self._unlike_written(body):
            # Maybe an event older than our last write (it comes a few ms later), maybe an
            # edit: judged again on the newest event after a pause, and only then restored.
            self._timer.soon(RESTORE, RESTORE_DELAY)

    def _unlike_written(self, body: Mapping[str, Any] | None) -> bool:
        """The own pod's label or annotations are not what the publisher wrote last."""
        written = self.publisher.written()
        if body is None or written is None:
            return False  # nothing written yet: the publisher is at it (or retrying)
        metadata = body.get("metadata", {})
        annotations = metadata.get("annotations") or {}
        shown_now = ((metadata.get("labels") or {}).get(self.config.role_label),
                     annotations.get(EPOCH_ANNOTATION), annotations.get(LEADER_ANNOTATION))
        return shown_now != written.shown()

    def _restore(self) -> None:
        """The timer's check: still unlike what was written, so someone edited it."""
        body = self.group.get(self.config.identity)
        if self._left_on_delete or not self._unlike_written(body):
            return
        metadata = (body or {}).get("metadata", {})
        annotations = metadata.get("annotations") or {}
        log.info("role label or annotations of own pod edited (label %r, epoch %r, leader %r): "
                 "restoring them", (metadata.get("labels") or {}).get(self.config.role_label),
                 annotations.get(EPOCH_ANNOTATION), annotations.get(LEADER_ANNOTATION))
        self.publisher.restore()

    def own_pod_gone(self, body: Mapping[str, Any]) -> None:
        """A DELETED of the own pod: deleted at once (`--force --grace-period=0`), or only
        out of the watch's selector (the group label edited or removed), which the
        apiserver also reports as DELETED, with the pod as it was. A GET tells them apart."""
        if self._left_on_delete:
            return  # the usual end of a graceful delete: left on its deletionTimestamp
        state = self._own_pod_state(body.get("metadata", {}).get("uid"))
        if state == "deleted":
            self.leave_on_delete("was deleted")
        elif state == "deleting":
            self.leave_on_delete()
        elif state == "present":
            log.warning(
                "own pod is not deleted, but no longer carries the label %s=%s: the "
                "operator no longer sees it, and its role label is not put right, until "
                "the label is back; the election goes on", GROUP_LABEL, self.config.election,
            )
        else:
            log.warning(
                "own pod: the watch says deleted, but it could not be read to confirm; "
                "staying in the election (a pod being deleted shows it in its next event)"
            )

    def _own_pod_state(self, uid: str | None) -> PodState:
        """'deleted' (404, or a pod of our name with another uid: ours is gone), 'deleting'
        (deletionTimestamp), 'present', or 'unknown' when it could not be read."""
        for pause in (*CONFIRM_PAUSES, None):
            try:
                pod = self._api.read_pod(self.config.namespace or "default", self.config.identity)
            except ApiError as error:
                if error.status == 404:
                    return "deleted"
                log.debug("reading the own pod failed: %s", error)
            except Exception as error:
                log.debug("reading the own pod failed: %s", error)
            else:
                metadata = (pod or {}).get("metadata") or {}
                if uid and metadata.get("uid") != uid:
                    return "deleted"
                return "deleting" if metadata.get("deletionTimestamp") else "present"
            if pause is not None:
                time.sleep(pause)
        return "unknown"

    def leave_on_delete(self, how: str = "is being deleted") -> None:
        if self._left_on_delete:
            return
        self._left_on_delete = True
        status = self.control.current()
        log.info("own pod %s: leaving the election (was %s)", how, status.role.value)
        self.control.leave()
        self.publisher.post_event(
            LEAVING_ON_DELETE,
            f"pod {how}: left election {self.config.election!r} "
            f"(was {status.role.value}) so that a successor takes over while it drains",
        )

    def step_down(self, value: str, listed: bool = False) -> None:
        """Acted on at once, removed later (`REMOVAL_DELAY`, on the timer's thread): the
        removal is not on the way to the successor and does not compete with the
        demotion's patch of the same pod. Events that still show the value acted on
        (older than the removal) are not acted on again; the removal's own event, which
        shows no annotation, ends that, so a request made after it is a new one. A
        listing (after kopf's watch broke) may have skipped that event: once our removal
        succeeded, a listed pod that shows the value again was annotated again."""
        if value == self._step_down_seen and not (listed and self._step_down_removed):
            return
        self._step_down_seen, self._step_down_removed = value, False
        self._act_on_step_down(value)
        self._timer.soon(STEP_DOWN, REMOVAL_DELAY)

    def _act_on_step_down(self, value: str) -> bool:
        """Step down if leader; True if asked to."""
        status = self.control.current()
        if status.role is not Role.LEADER:
            log.info(
                "step-down annotation on own pod ignored: not the leader (%s)", status.role.value
            )
            return False
        self.control.step_down()
        asked = shown(value, SHOWN_VALUE_CHARACTERS)
        log.info("step-down annotation on own pod (%s): stepping down", asked)
        self.publisher.post_event(
            STEPPED_DOWN,
            f"stepped down as leader of election {self.config.election!r} (epoch "
            f"{status.epoch}) on request (annotation {STEP_DOWN_ANNOTATION}={asked}); "
            "volunteering again at the back of the queue",
        )
        return True

    def _remove_step_down(self) -> None:
        """The timer's removal of the annotation, from the own pod as last seen and only if
        it still says the value acted on (another value is a new request: its event is
        acted on). The pod's resourceVersion is the precondition: a 409 means it changed
        since, and it is tried again, on its newer state, after a backoff. (Not a JSON
        patch's `test`: the API server compares the value's JSON text, and its encoding of
        a non-ASCII value is not Python's.)"""
        value = self._step_down_seen
        body = self.group.get(self.config.identity)
        metadata = (body or {}).get("metadata") or {}
        if value is None or (metadata.get("annotations") or {}).get(
                STEP_DOWN_ANNOTATION) != value:
            self._timer.forget(STEP_DOWN)
            return
        patch: dict[str, Any] = {"metadata": {"annotations": {STEP_DOWN_ANNOTATION: None}}}
        if metadata.get("resourceVersion"):
            patch["metadata"]["resourceVersion"] = metadata["resourceVersion"]
        try:
            self._api.patch_pod(self.config.namespace or "default", self.config.identity, patch)
        except ApiError as error:
            if error.status == 404:
                self._timer.forget(STEP_DOWN)
                return
            self._removal_failed(error)
        except Exception as error:
            self._removal_failed(error)
        else:
            self._step_down_removed = True
            self._timer.forget(STEP_DOWN)

    def _removal_failed(self, error: Exception) -> None:
        failure = classify(error)
        if failure.reason != "conflict":  # a 409 is expected: the pod moved on meanwhile
            log.info("step-down annotation not removed yet (%s): trying again", failure.detail)
        self._timer.later(STEP_DOWN)

    def other_pod(self, body: Mapping[str, Any]) -> None:
        status = self.control.current()
        if self._labelled_leader(status) and self._claims_leader_wrongly(body, status.epoch):
            self.relabel(body, status.epoch)

    def _labelled_leader(self, status: RoleStatus) -> bool:
        """Leader, and the own pod as last seen says so with our epoch. Before that, the
        publisher's gate (sidecar/labelgate.py) clears the other labels itself, from a
        fresh listing: a relabel from here would be a second request on the way."""
        if status.role is not Role.LEADER:
            return False
        own = self.group.get(self.config.identity)
        metadata = (own or {}).get("metadata") or {}
        return ((metadata.get("labels") or {}).get(self.config.role_label) == Role.LEADER.value
                and (metadata.get("annotations") or {}).get(EPOCH_ANNOTATION)
                == str(status.epoch))

    def sweep(self) -> None:
        """Hand every stale leader label to the timer's thread: the own pod's handler, which
        calls this, must not wait for API requests (it may have a deletion to act on)."""
        status = self.control.current()
        if not self._labelled_leader(status):
            return
        for body in self.group.snapshot():
            name = body.get("metadata", {}).get("name")
            if name != self.config.identity and self._claims_leader_wrongly(body, status.epoch):
                self._timer.soon(name)

    def _claims_leader_wrongly(self, body: Mapping[str, Any], epoch: int | None) -> bool:
        metadata = body.get("metadata", {})
        if (metadata.get("labels") or {}).get(self.config.role_label) != Role.LEADER.value:
            return False
        raw = (metadata.get("annotations") or {}).get(EPOCH_ANNOTATION)
        try:
            theirs = int(raw) if raw is not None else None
        except ValueError:
            theirs = None
        # A newer term than ours means we are the stale one: leave it to the election.
        return theirs is None or epoch is None or theirs <= epoch

    def relabel(self, body: Mapping[str, Any], epoch: int | None) -> None:
        metadata = body.get("metadata", {})
        name = metadata.get("name", "")
        # Only the pod as it was judged: with its resourceVersion in the patch the API
        # refuses (409) if the pod changed since, e.g. its own sidecar just wrote `unknown`
        # on the way out, which a relabel from an older event must not overwrite.
        labels = {self.config.role_label: Role.FOLLOWER.value}
        patch: dict[str, Any] = {"metadata": {"labels": labels}}
        if metadata.get("resourceVersion"):
            patch["metadata"]["resourceVersion"] = metadata["resourceVersion"]
        try:
            self._api.patch_pod(self.config.namespace or "default", name, patch)
        except Exception as error:
            self._relabel_failed(name, error)
            return
        self._timer.forget(name)
        failed_before = self._relabel_logged.pop(name, None)
        log.info("relabelled pod %r from leader to follower (stale label)%s", name,
                 " after failed tries" if failed_before else "")
        self.publisher.post_event(
            STALE_LEADER,
            f"role label said leader, but {self.config.identity!r} is the leader of election "
            f"{self.config.election!r} (epoch {epoch}): relabelled to follower",
            type="Warning",
            pod=name,
            uid=metadata.get("uid"),
        )

    def _relabel_failed(self, name: str, error: Exception) -> None:
        if isinstance(error, ApiError) and error.status in (404, 409):
            # 409: the pod changed since it was judged; its newer version comes with the
            # watch and is judged then. 404: it is gone, and its label with it (and from
            # the group: a ghost the watch never said DELETED of).
            log.debug("pod %r changed since it was judged, or is gone (%s): not relabelled",
                      name, error)
            self._timer.forget(name)
            if error.status == 404 and (body := self.group.get(name)) is not None:
                self.group.remove(body)
            return
        self._timer.later(name)
        reason = classify(error).reason
        if self._relabel_logged.get(name) != reason:  # no storm: once per kind of failure
            self._relabel_logged[name] = reason
            log.warning("could not relabel stale leader pod %r: %s; trying again with backoff",
                        name, error)

    def _on_timer(self, key: str) -> None:
        if key == RESYNC:
            self._resync()
        elif key == STEP_DOWN:
            self._remove_step_down()
        elif key == RESTORE:
            self._restore()
        else:
            self._relabel_again(key)

    def _resync(self) -> None:
        """After a listing: drop the pods that no longer exist, which kopf sends no DELETED
        of when its watch missed it. A failed list is tried again with backoff."""
        since = time.monotonic()
        try:
            listed = self._api.list_pods(self.config.namespace or "default",
                                         f"{GROUP_LABEL}={self.config.election}")
        except Exception as error:
            log.debug("listing the group's pods failed (%s): again with backoff", error)
            self._timer.later(RESYNC)
            return
        self._timer.forget(RESYNC)
        present = {uid_of(pod) for pod in (listed or {}).get("items") or []}
        ghosts = self.group.prune(present, since)
        if ghosts:
            log.info("pods %s are gone (deleted while the watch was away): forgotten",
                     ", ".join(sorted(ghosts)))

    def _relabel_again(self, name: str) -> None:
        """The timer's try, judged afresh on the pod's newest known state."""
        status = self.control.current()
        body = self.group.get(name)
        if (body is None or not self._labelled_leader(status)
                or not self._claims_leader_wrongly(body, status.epoch)):
            self._timer.forget(name)
            self._relabel_logged.pop(name, None)
            return
        self.relabel(body, status.epoch)


def build_registry(config: Config, reconciler: Reconciler) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    labels = {GROUP_LABEL: config.election}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        connection = api_connection(config)  # re-read: the in-cluster token rotates
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_path=connection.ca_path,
            ca_data=connection.ca_data,
            insecure=connection.insecure,
            token=connection.bearer_token(),
            username=connection.username,
            password=connection.password,
            certificate_path=connection.certificate_path,
            certificate_data=connection.certificate_data,
            private_key_path=connection.private_key_path,
            private_key_data=connection.private_key_data,
            default_namespace=config.namespace,
        )

    @kopf.on.event("v1", "pods", labels=labels, registry=registry)
    def group_pod(type: str | None, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        reconciler.on_pod(type, body, patch)

    return registry


def build_settings(config: Config) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # a namespaced Role cannot list namespaces or CRDs
    settings.peering.standalone = True  # every sidecar watches its group: no peering objects
    settings.posting.level = logging.WARNING  # our Events are explicit; not kopf's log lines
    settings.posting.reporting_component = "leader-sidecar"
    settings.posting.reporting_instance = config.identity
    settings.watching.label_selectors["v1", "pods"] = f"{GROUP_LABEL}={config.election}"
    # Come back quickly after an API outage; the default adds up to almost a minute.
    settings.networking.error_backoffs = (0.2, 0.5, 1, 2, 3, 5, 5, 5, 5, 5)
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 300  # renew watches like client-go does
    settings.process.ultimate_exiting_timeout = None  # never SIGKILL the sidecar's thread
    return settings


class OperatorHandle:
    """kopf on its own thread and loop; `stop()` is cancel-and-wait with a bound."""

    def __init__(
        self, config: Config, control: ElectionControl, publisher: KubernetesPublisher
    ) -> None:
        if config.namespace is None:
            raise ValueError("the operator needs the pod's namespace")
        self.namespace: str = config.namespace
        self.config = config
        self.reconciler = Reconciler(config, control, publisher)
        self._loop = asyncio.new_event_loop()
        self._stop_flag: asyncio.Event | None = None
        self._main: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"kopf-{config.identity}", daemon=True
        )

    def start(self) -> OperatorHandle:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """True once kopf has started its watchers (the first listing may still be running)."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Raise kopf's stop flag; if kopf has not finished within `STOP_GRACE` (it waits
        5 s for leftovers when stopped during its start-up), cancel it. Then join."""
        self._stopping.set()
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
                self._loop.call_soon_threadsafe(self._request_stop)
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if not stopped:
            log.warning("kopf operator thread still running %.1fs after stop", timeout)
        self.reconciler.close()
        return stopped

    def _request_stop(self) -> None:
        if self._stop_flag is not None:
            self._stop_flag.set()
        if self._main is not None:
            self._loop.call_later(STOP_GRACE, self._main.cancel)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._main = self._loop.create_task(self._supervise())
            self._loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass  # stopped by `stop()` after the grace period
        except Exception:
            log.exception("kopf operator thread crashed; drift is no longer repaired")
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        """What `asyncio.run` does on exit: cancel leftovers (kopf leaves some when stopped
        early), finish async generators, close."""
        leftovers = asyncio.all_tasks(self._loop)
        for task in leftovers:
            task.cancel()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.wait_for(
                asyncio.gather(*leftovers, return_exceptions=True), STOP_GRACE))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            # aiohttp closes TLS connections asynchronously: give their transports a few
            # loop turns (aiohttp's documented graceful-shutdown pause), or they leak.
            self._loop.run_until_complete(asyncio.sleep(TLS_CLOSE_PAUSE))
        self._loop.close()

    async def _supervise(self) -> None:
        self._stop_flag = asyncio.Event()
        if self._stopping.is_set():
            return
        while not self._stopping.is_set():
            settings = build_settings(self.config)
            ready = asyncio.Event()
            waiter = asyncio.create_task(self._signal_ready(ready))
            try:
                await kopf.operator(
                    registry=build_registry(self.config, self.reconciler),
                    settings=settings,
                    namespaces=[self.namespace],
                    standalone=True,
                    stop_flag=self._stop_flag,
                    ready_flag=ready,
                )
            except Exception as error:
                log.warning(
                    "kopf operator ended (%s); starting it again in %.0fs", error, RESTART_PAUSE
                )
            finally:
                waiter.cancel()
                settings.execution.executor.shutdown(wait=False, cancel_futures=True)
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_flag.wait(), RESTART_PAUSE)

    async def _signal_ready(self, ready: asyncio.Event) -> None:
        await ready.wait()
        self._ready.set()


class _RefusalsWithoutTraceback(logging.Filter):
    """kopf logs a watcher or an observer that gave up on a refusal of the API (401 for a
    token that is no longer valid, 403 for RBAC or a namespace that does not exist, 404)
    with its traceback, and again each time `OperatorHandle` starts kopf anew. A refusal
    is no bug: its one line (and the publisher's, which says what to fix) is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status = getattr(error, "status", None)  # kopf's APIError (private) carries it
        refused = isinstance(status, int) and 400 <= status < 500
        if error is not None and (isinstance(error, kopf.LoginError) or (
                refused and type(error).__module__.startswith("kopf."))):
            record.exc_info = None
            record.exc_text = None
        return True


_REFUSALS_WITHOUT_TRACEBACK = _RefusalsWithoutTraceback()
# asyncio too: kopf's start-up scan (`_read_old_api`) can end with a LoginError no task
# awaits any more (the operator gave up on the 401 meanwhile), which asyncio's "Task
# exception was never retrieved" logs with its traceback. Only kopf's refusals lose it.
KOPF_HANDLER_LOGGER = "kopf.objects"
KOPF_TASK_LOGGERS = (
    "kopf._core.reactor.running", "kopf._core.reactor.orchestration", "asyncio",
)


def start_operator(
    config: Config, control: ElectionControl, publisher: KubernetesPublisher
) -> OperatorHandle:
    """Start kopf for this sidecar's group; stop it with `OperatorHandle.stop()`."""
    for name in KOPF_TASK_LOGGERS:
        logging.getLogger(name).addFilter(_REFUSALS_WITHOUT_TRACEBACK)
    # kopf logs "Handler ... succeeded." for every event of every pod of the group: in a
    # handover, a few dozen lines per sidecar, formatted and written while the successor
    # needs the CPU. Its warnings and errors still show; our handlers log what matters.
    logging.getLogger(KOPF_HANDLER_LOGGER).setLevel(logging.WARNING)
    return OperatorHandle(config, control, publisher).start()
