"""`kubectl get pods -w` for one group of pods, as a recorder: every state the API server
sends, in its order, with the instant it arrived here.

`GroupWatch` lists the group's pods and then watches them from the listing's
resourceVersion; a second watch follows the EndpointSlices of one Service the same way.
Sampling (a GET every few ms) misses any state shorter than its period; a watch misses
none: the API server sends every change of the watched objects, in resourceVersion order
(one watch of one resource is one ordered stream), so what is recorded here is the
sequence of states the API server held, as any client of it (a Service's EndpointSlice
controller, `kubectl get pods -l role=leader`) can have seen them.

Kept from the stream:

- `changes`: every pod event (`PodSeen`: name, uid, role label, epoch, deleting, the
  step-down annotation, the pod IP), with `time.monotonic()` and wall time of its arrival;
- `doubles`: every interval in which two or more pods of the group carried
  `<role_label>=leader` (it opens at the event that made the second pod a leader and
  closes at the event that left fewer than two), and `unlabelled`: every interval in
  which none did;
- `endpoints`: every change of the ready addresses of the Service's EndpointSlices.

`wait_for` blocks until an event after a `mark()` satisfies a predicate, which is how a
round waits for the action's record (a deletionTimestamp, an annotation) and for the new
leader's label. A watch that ended (its timeout, a broken connection) is resumed from the
last resourceVersion, so nothing in between is lost; after a 410 (the history was
compacted) it lists again and counts a `gap`: a round that saw one cannot claim zero
doubles, and `GroupWatch.gaps` says so. Times are this process's: a figure from an event
to another is what a watcher on this machine sees, each late by its own delivery
(milliseconds on a local control plane), never earlier than the API server's write.

For the tests, benchmarks and the cluster demo only; the sidecar never imports it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes

log = logging.getLogger(__name__)

STEP_DOWN_ANNOTATION = "leader-election/step-down"
EPOCH_ANNOTATION = "leader-election/epoch"
WATCH_SECONDS = 240  # the server ends a watch after this; it is resumed at once
RETRY_PAUSE = 0.2  # after a watch broke (the API server away)


@dataclasses.dataclass(frozen=True)
class PodSeen:
    """One pod as one watch event showed it."""

    at: float  # time.monotonic() at its arrival
    wall: float  # time.time() at its arrival
    type: str  # ADDED, MODIFIED, DELETED, LISTED
    name: str
    uid: str
    role: str | None
    epoch: str | None
    deleting: bool
    step_down: str | None
    ip: str | None
    resource_version: str
    leaders: tuple[str, ...] = ()  # the pods labelled leader once this event is applied


@dataclasses.dataclass
class Interval:
    """An interval of a condition on the group (two leaders, none), by arrival times."""

    start: float
    pods: tuple[str, ...]
    end: float | None = None

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


@dataclasses.dataclass(frozen=True)
class EndpointsSeen:
    at: float
    wall: float
    ready: tuple[str, ...]  # the ready addresses of all the Service's slices, sorted


class GroupWatch:
    """Watches the pods matching `selector` in `namespace` (and the EndpointSlices of
    `service`, if given) until `close()`."""

    def __init__(self, kubeconfig: Path, namespace: str, selector: str,
                 role_label: str = "role", service: str | None = None) -> None:
        self.namespace = namespace
        self.selector = selector
        self.role_label = role_label
        self.service = service
        self.client: Any = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(kubeconfig))
        self.core: Any = kubernetes.client.CoreV1Api(self.client)
        self.discovery: Any = kubernetes.client.DiscoveryV1Api(self.client)
        self.changes: list[PodSeen] = []
        self.doubles: list[Interval] = []
        self.unlabelled: list[Interval] = []
        self.endpoints: list[EndpointsSeen] = []
        self.gaps = 0
        self.pods: dict[str, PodSeen] = {}  # uid -> its newest state
        self._slices: dict[str, tuple[str, ...]] = {}
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._responses: list[Any] = []
        self._listed = threading.Event()
        self._threads = [threading.Thread(target=self._guarded, args=(self._watch_pods,),
                                          name="group-watch", daemon=True)]
        if service is not None:
            self._threads.append(threading.Thread(
                target=self._guarded, args=(self._watch_slices,), name="slice-watch",
                daemon=True))

    # --- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> GroupWatch:
        for thread in self._threads:
            thread.start()
        if not self._listed.wait(timeout):
            raise TimeoutError(f"no listing of pods {self.selector!r} within {timeout:.0f} s")
        return self

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            responses = list(self._responses)
        for response in responses:  # unblocks the threads' reads
            try:
                response.shutdown()
            except Exception:  # already closed
                log.debug("closing a watch response failed", exc_info=True)
        for thread in self._threads:
            thread.join(5)
        self.client.close()

    def __enter__(self) -> GroupWatch:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------

    def mark(self) -> int:
        """A position in `changes`: `wait_for(..., after=mark)` looks at later events only."""
        with self._cond:
            return len(self.changes)

    def leaders(self) -> list[str]:
        with self._cond:
            return self._leaders()

    def roles(self) -> dict[str, str | None]:
        """pod name -> role label, of the pods not being deleted."""
        with self._cond:
            return {p.name: p.role for p in self.pods.values() if not p.deleting}

    def ip(self, name: str) -> str | None:
        with self._cond:
            for pod in self.pods.values():
                if pod.name == name and not pod.deleting:
                    return pod.ip
            return None

    def doubles_since(self, start: float) -> list[Interval]:
        with self._cond:
            return [d for d in self.doubles if d.end is None or d.end >= start]

    def wait_for(self, predicate: Callable[[PodSeen], bool], after: int,
                 timeout: float, what: str) -> PodSeen:
        """The first event at or after position `after` that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        index = after
        with self._cond:
            while True:
                while index < len(self.changes):
                    seen = self.changes[index]
                    index += 1
                    if predicate(seen):
                        return seen
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what}: not seen within {timeout:.0f} s")
                self._cond.wait(remaining)

    def wait_state(self, predicate: Callable[[GroupWatch], Any], timeout: float,
                   what: str) -> Any:
        """Wait until `predicate(self)` (called under the watch's lock) is truthy."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate(self)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what}: not within {timeout:.0f} s")
                self._cond.wait(remaining)
            return value

    def wait_endpoints(self, wanted: tuple[str, ...], since: float,
                       timeout: float) -> EndpointsSeen:
        """The first change of the ready addresses at or after monotonic `since` that
        leaves exactly `wanted`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for seen in self.endpoints:
                    if seen.at >= since and seen.ready == wanted:
                        return seen
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = self.endpoints[-1].ready if self.endpoints else None
                    raise TimeoutError(f"endpoints {wanted}: not within {timeout:.0f} s "
                                       f"(last seen {last}, slices {self._slices})")
                self._cond.wait(remaining)

    def settled_leader(self, replicas: int) -> str | None:
        """Under the lock (from `wait_state`): the leader when exactly one of `replicas`
        pods says leader and every other says follower."""
        live = [p for p in self.pods.values() if not p.deleting]
        leaders = [p.name for p in live if p.role == "leader"]
        if len(live) == replicas and len(leaders) == 1 and all(
                p.role in ("leader", "follower") for p in live):
            return leaders[0]
        return None

    # --- the pods' stream ---------------------------------------------------------------

    def _leaders(self) -> list[str]:
        return sorted(p.name for p in self.pods.values() if p.role == "leader")

    def _record(self, kind: str, pod: dict[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        seen = PodSeen(
            at=time.monotonic(), wall=time.time(), type=kind, name=metadata.get("name", ""),
            uid=metadata.get("uid", ""), role=labels.get(self.role_label),
            epoch=annotations.get(EPOCH_ANNOTATION),
            deleting=metadata.get("deletionTimestamp") is not None,
            step_down=annotations.get(STEP_DOWN_ANNOTATION),
            ip=(pod.get("status") or {}).get("podIP"),
            resource_version=metadata.get("resourceVersion", ""))
        with self._cond:
            if kind == "DELETED":
                self.pods.pop(seen.uid, None)
            else:
                self.pods[seen.uid] = seen
            seen = dataclasses.replace(seen, leaders=tuple(self._leaders()))
            self.changes.append(seen)
            self._track(seen.at)
            self._cond.notify_all()

    def _track(self, now: float) -> None:
        """Open or close the double and the unlabelled intervals after an event."""
        leaders = tuple(self._leaders())
        open_double = self.doubles[-1] if self.doubles and self.doubles[-1].end is None else None
        if len(leaders) >= 2 and open_double is None:
            self.doubles.append(Interval(now, leaders))
            log.warning("two pods labelled leader: %s", ", ".join(leaders))
        elif len(leaders) >= 2 and open_double is not None:
            open_double.pods = tuple(sorted(set(open_double.pods) | set(leaders)))
        elif open_double is not None:
            open_double.end = now
        open_gap = (self.unlabelled[-1] if self.unlabelled and self.unlabelled[-1].end is None
                    else None)
        if not leaders and open_gap is None and self.pods:
            self.unlabelled.append(Interval(now, ()))
        elif leaders and open_gap is not None:
            open_gap.end = now

    def _watch_pods(self) -> None:
        resource_version = self._list_pods()
        self._listed.set()
        while not self._closed.is_set():
            try:
                for kind, pod in self._stream(self.core.list_namespaced_pod,
                                              label_selector=self.selector,
                                              resource_version=resource_version):
                    if kind == "BOOKMARK":
                        resource_version = pod["metadata"]["resourceVersion"]
                        continue
                    if kind == "ERROR":
                        raise _Gone(pod)
                    resource_version = pod["metadata"].get("resourceVersion", resource_version)
                    self._record(kind, pod)
            except _Gone:
                self.gaps += 1
                log.warning("pod watch: history compacted (410); listing again (a gap)")
                resource_version = self._list_pods()
            except Exception as error:
                if self._closed.is_set():
                    return
                log.info("pod watch broke (%s); resuming from %s", error, resource_version)
                time.sleep(RETRY_PAUSE)

    def _list_pods(self) -> str:
        while True:
            try:
                listed = self.client.sanitize_for_serialization(self.core.list_namespaced_pod(
                    self.namespace, label_selector=self.selector))
                break
            except Exception as error:
                if self._closed.is_set():
                    return ""
                log.info("listing pods failed (%s); again", error)
                time.sleep(RETRY_PAUSE)
        with self._cond:
            self.pods.clear()
        for pod in listed.get("items") or []:
            self._record("LISTED", pod)
        return str(listed["metadata"]["resourceVersion"])

    # --- the EndpointSlices' stream -----------------------------------------------------

    def _watch_slices(self) -> None:
        selector = f"kubernetes.io/service-name={self.service}"
        resource_version = ""
        while not self._closed.is_set():
            try:
                if not resource_version:
                    listed = self.client.sanitize_for_serialization(
                        self.discovery.list_namespaced_endpoint_slice(
                            self.namespace, label_selector=selector))
                    with self._cond:
                        self._slices.clear()
                    for piece in listed.get("items") or []:
                        self._record_slice("ADDED", piece)
                    resource_version = str(listed["metadata"]["resourceVersion"])
                for kind, piece in self._stream(self.discovery.list_namespaced_endpoint_slice,
                                                label_selector=selector,
                                                resource_version=resource_version):
                    if kind == "ERROR":
                        raise _Gone(piece)
                    resource_version = piece["metadata"].get("resourceVersion", resource_version)
                    if kind != "BOOKMARK":
                        self._record_slice(kind, piece)
            except _Gone:
                resource_version = ""
            except Exception as error:
                if self._closed.is_set():
                    return
                log.info("slice watch broke (%s); resuming", error)
                time.sleep(RETRY_PAUSE)

    def _record_slice(self, kind: str, piece: dict[str, Any]) -> None:
        name = piece["metadata"]["name"]
        ready = tuple(sorted(
            address for endpoint in piece.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready", True) is not False
            for address in endpoint.get("addresses") or []))
        with self._cond:
            if kind == "DELETED":
                self._slices.pop(name, None)
            else:
                self._slices[name] = ready
            combined = tuple(sorted(a for addresses in self._slices.values() for a in addresses))
            if not self.endpoints or self.endpoints[-1].ready != combined:
                self.endpoints.append(EndpointsSeen(time.monotonic(), time.time(), combined))
                self._cond.notify_all()

    # --- the HTTP stream ----------------------------------------------------------------

    def _stream(self, method: Callable[..., Any], *, label_selector: str,
                resource_version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """One watch request, its events as they arrive (parsed here: the client's models
        would cost milliseconds per event)."""
        response = method(self.namespace, label_selector=label_selector, watch=True,
                          resource_version=resource_version, allow_watch_bookmarks=True,
                          timeout_seconds=WATCH_SECONDS, _preload_content=False)
        with self._cond:
            self._responses.append(response)
        try:
            pending = b""
            for chunk in response.stream(amt=None, decode_content=False):
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]
        finally:
            with self._cond:
                self._responses.remove(response)
            response.release_conn()

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:  # a bug here: say so; the waits then time out
            log.exception("group watch thread crashed")
        finally:
            self._listed.set()


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""
