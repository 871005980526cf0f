"""A Kubernetes API for tests: kmock's `KubernetesEmulator` over real HTTP, extended where
the sidecar relies on behaviour of the real API server that kmock 0.8 does not have.

What kmock 0.8 gives us: discovery, list/watch/get/create/patch/delete of declared
resources, objects kept in memory, watch streams fed from an in-memory bus, and a merge
patch in which `null` removes a key (`dicts.merge_patch_dict`; a JSON patch list goes
through `jsonpatch`).

What this module adds (each one is covered by `test_k8s_emulator.py`):

- label selectors (`?labelSelector=`) on list and watch, equality- and set-based, with the
  real API's watch semantics: an object that starts matching arrives as ADDED, one that
  stops matching as DELETED;
- patch content types: `merge-patch+json` and `strategic-merge-patch+json` need a JSON
  object, `json-patch+json` a list, anything else is 415 (the real API rejects a body that
  does not fit its content type with 400; kmock takes any body whatever the content type);
  strategic-merge directives
  (`$patch`, `$retainKeys`, ...) are refused rather than stored as data;
- `metadata.generateName` on create (kmock stores such objects under the name `None`, so a
  second kopf Event collided with the first), plus `uid`, `creationTimestamp` and a
  `resourceVersion` that grows on every write; a patch that names a stale
  `resourceVersion` gets 409, as on the real API;
- faults applied *before* the emulator touches its state (kmock's own reactions run after
  the state change, so an injected 403 on a patch would still have changed the pod):
  latency, error statuses (403 with the real RBAC wording, 409, 5xx), and a whole API
  server that is down (the port is closed: connection refused) and comes back on the same
  port;
- `KubeApi`: the emulator on its own thread and event loop (the kubernetes client is
  synchronous and kopf runs its own loop), a kubeconfig file pointing at it, and
  synchronous helpers that act like `kubectl` (create, patch, read pods and events)
  without being subject to the injected faults.

Not emulated: field selectors, server-side apply, resourceVersion-based watch resumption
(every watch replays the current objects as ADDED), RBAC itself (403 only by injection).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import dataclasses
import datetime as dt
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, rendering  # kmock's request model; no public alias

T = TypeVar("T")

ADMIN_HEADER = "X-Kmock-Admin"  # requests with it bypass faults (a test acting as kubectl)
PODS = kmock.resource("", "v1", "pods")
EVENTS = kmock.resource("", "v1", "events")
NAMESPACES = kmock.resource("", "v1", "namespaces")
ALL_VERBS = {"get", "list", "watch", "patch", "create", "delete", "update"}
MERGE_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}
JSON_PATCH_TYPE = "application/json-patch+json"


# --- label selectors -----------------------------------------------------------------------

_REQUIREMENT_RE = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin"


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """A parsed `labelSelector` query parameter (the syntax `kubectl -l` accepts)."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if not text or not text.strip():
            return cls()
        return cls(tuple(_parse_requirement(part) for part in _split_top_level(text)))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(requirement.matches(labels or {}) for requirement in self.requirements)


class SelectorError(ValueError):
    pass


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `in (...)` parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _parse_requirement(text: str) -> Requirement:
    match = _REQUIREMENT_RE.match(text)
    if not match:
        raise SelectorError(f"unable to parse requirement: {text!r}")
    key, negated = match["key"], bool(match["neg"])
    if match["op"]:
        if negated:
            raise SelectorError(f"unable to parse requirement: {text!r}")
        op = "!=" if match["op"] == "!=" else "="
        return Requirement(key, op, frozenset([match["value"]]))
    if match["setop"]:
        values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
        return Requirement(key, match["setop"], values)
    return Requirement(key, "!exists" if negated else "exists")


# --- faults ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Fault:
    """One injected misbehaviour. `verbs`/`resource` None match everything; discovery
    requests (no resource) only match a fault without a resource filter."""

    verbs: frozenset[str] | None = None
    resource: str | None = None  # plural, e.g. "pods"
    delay: float = 0.0
    status: int | None = None
    times: int | None = None  # None: until removed
    hits: int = 0

    def matches(self, verb: str, plural: str | None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.verbs is not None and verb not in self.verbs:
            return False
        return self.resource is None or self.resource == plural


_REASONS = {
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def request_verb(request: rendering.Request) -> str:
    """The RBAC verb a request needs (what `kubectl auth can-i` would ask)."""
    verbs = {
        enums.action.WATCH: "watch",
        enums.action.LIST: "list",
        enums.action.FETCH: "get",
        enums.action.CREATE: "create",
        enums.action.UPDATE: "patch",
        enums.action.DELETE: "delete",
    }
    return verbs.get(request.action) or str(request.method.value).lower()


def fault_error(status: int, request: rendering.Request, verb: str) -> kmock.KubernetesError:
    plural = request.resource.plural if request.resource is not None else None
    where = f' in the namespace "{request.namespace}"' if request.namespace else ""
    if status == 403:
        what = f'{plural} "{request.name}"' if request.name else f"{plural}"
        message = (
            f'{what} is forbidden: User "system:serviceaccount:{request.namespace or "default"}'
            f':leader-sidecar" cannot {verb} resource "{plural}" in API group ""{where}'
        )
    elif status == 409:
        message = (
            f'Operation cannot be fulfilled on {plural} "{request.name}": the object has been '
            "modified; please apply your changes to the latest version and try again"
        )
    else:
        message = f"injected fault: HTTP {status}"
    return kmock.KubernetesError(
        status=status,
        reason=_REASONS.get(status, "Failure"),
        message=message,
        details={"name": request.name, "kind": plural, "injected": True},
    )


# --- the emulator ---------------------------------------------------------------------------


@attrs.define(kw_only=True)
class ExtendedEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator plus what the module docstring lists."""

    faults: list[Fault] = attrs.field(factory=list)
    _revision: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    # ---- request path

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if ADMIN_HEADER not in request.headers:
            await self._apply_faults(request)
        if request.resource is not None and request.action is enums.action.UPDATE:
            await self.apply_patch(
                request.resource,
                request.namespace,
                request.name,
                request.data,
                request.headers.get("Content-Type", ""),
            )
            # Skip KubernetesEmulator's own (naive) patch: serve the stored object as is.
            return await kmock.RawHandler._handle(self, request)  # type: ignore[no-any-return]
        creating = request.resource is not None and request.action is enums.action.CREATE
        if creating and isinstance(request.data, dict):
            self._complete_new_object(request.data, request.namespace)
        return await super()._handle(request)  # type: ignore[no-any-return]

    async def _apply_faults(self, request: rendering.Request) -> None:
        verb = request_verb(request)
        plural = request.resource.plural if request.resource is not None else None
        for fault in list(self.faults):
            if fault.matches(verb, plural) and (plural is not None or fault.resource is None):
                fault.hits += 1
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    raise fault_error(fault.status, request, verb)
                return

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        selector = self._selector(request)
        result: dict[str, Any] = await super()._serve_list(request)
        result["items"] = [item for item in result["items"] if selector.matches(_labels(item))]
        result["metadata"] = {"resourceVersion": str(next(self._revision))}
        return result

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        selector = self._selector(request)
        matching: set[tuple[str | None, str | None]] = set()
        async for item in super()._serve_watch(request):
            if not isinstance(item, dict):
                yield item
                continue
            translated = _translate_watch_event(item, selector, matching)
            if translated is not None:
                yield translated

    @staticmethod
    def _selector(request: rendering.Request) -> LabelSelector:
        try:
            return LabelSelector.parse(request.params.get("labelSelector"))
        except SelectorError as error:
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message=str(error)
            ) from None

    # ---- state changes shared by HTTP requests and the test's own (admin) calls

    def _complete_new_object(self, body: dict[str, Any], namespace: str | None) -> None:
        metadata = body.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + secrets.token_hex(3)
        if namespace and not metadata.get("namespace"):
            metadata["namespace"] = namespace
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", _now())
        metadata["resourceVersion"] = str(next(self._revision))

    async def apply_patch(
        self,
        resource: kmock.resource,
        namespace: str | None,
        name: str | None,
        patch: Any,
        content_type: str,
    ) -> dict[str, Any]:
        media = content_type.split(";")[0].strip().lower()
        _check_patch_body(media, patch)
        key = (resource, namespace, name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            obj = self._objects[key]
            wanted = (
                patch.get("metadata", {}).get("resourceVersion")
                if isinstance(patch, dict)
                else None
            )
            if wanted is not None and wanted != obj.last.raw.get("metadata", {}).get(
                "resourceVersion"
            ):
                raise kmock.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=(
                        f"Operation cannot be fulfilled on {resource.plural} {name!r}: the "
                        "object has been modified; please apply your changes to the latest "
                        "version and try again"
                    ),
                )
            obj.patch(patch)
            new = copy.deepcopy(obj.last.raw)
            new.setdefault("metadata", {})["resourceVersion"] = str(next(self._revision))
            obj.history[-1] = new
            raw = obj.raw
            await self._buses[resource].put({"type": "MODIFIED", "object": raw})
            return copy.deepcopy(raw)  # type: ignore[no-any-return]

    async def admin_create(self, resource: kmock.resource, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        namespace = body.get("metadata", {}).get("namespace")
        self._complete_new_object(body, namespace)
        key = (resource, namespace, body["metadata"]["name"])
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                raise kmock.KubernetesError(status=409, reason="AlreadyExists", message="exists")
            if key in self._objects:
                self._objects[key].create(body)
            else:
                self._objects[key] = body
            raw = self._objects[key].raw
            await self._buses[resource].put({"type": "ADDED", "object": raw})
            return copy.deepcopy(raw)  # type: ignore[no-any-return]

    async def admin_delete(self, resource: kmock.resource, namespace: str, name: str) -> None:
        key = (resource, namespace, name)
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                raw = self._objects[key].raw
                self._objects[key].delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})

    async def admin_list(
        self, resource: kmock.resource, namespace: str | None
    ) -> list[dict[str, Any]]:
        async with self._lock:
            return [
                copy.deepcopy(obj.raw)
                for (res, ns, _), obj in self._objects.items()
                if res == resource and (namespace is None or ns == namespace) and not obj.deleted
            ]


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = obj.get("metadata", {}).get("labels") or {}
    return dict(labels)


def _translate_watch_event(
    item: dict[str, Any], selector: LabelSelector, matching: set[tuple[str | None, str | None]]
) -> dict[str, Any] | None:
    """What a watch with `selector` sees of one raw event, as the real API shows it."""
    if not selector.requirements:
        return item
    obj = item.get("object", {})
    key = (obj.get("metadata", {}).get("namespace"), obj.get("metadata", {}).get("name"))
    if item.get("type") == "DELETED":
        if key in matching:
            matching.discard(key)
            return item
        return None
    if selector.matches(_labels(obj)):
        kind = item.get("type") if key in matching else "ADDED"
        matching.add(key)
        return {"type": kind, "object": obj}
    if key in matching:  # it stopped matching: the real API reports it as gone
        matching.discard(key)
        return {"type": "DELETED", "object": obj}
    return None


def _check_patch_body(media: str, patch: Any) -> None:
    if media == JSON_PATCH_TYPE:
        if not isinstance(patch, list):
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=("json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
            )
        return
    if media not in MERGE_TYPES:
        raise kmock.KubernetesError(
            status=415,
            reason="UnsupportedMediaType",
            message=(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH_TYPE}, {', '.join(sorted(MERGE_TYPES))} (emulator), got {media!r}"
            ),
        )
    if not isinstance(patch, dict):
        raise kmock.KubernetesError(
            status=400,
            reason="BadRequest",
            message=("json: cannot unmarshal array into Go value of type map[string]interface {}"),
        )
    if media.startswith("application/strategic") and _has_directive(patch):
        raise kmock.KubernetesError(
            status=422,
            reason="Invalid",
            message=("strategic merge directives ($patch, $retainKeys, ...) are not emulated"),
        )


def _has_directive(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(k).startswith("$") or _has_directive(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_directive(v) for v in value)
    return False


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _QuickServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's test server, but closing it does not wait 60 s for open watch streams."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        return aiohttp.web.ServerRunner(server, debug=debug, shutdown_timeout=0.2, **kwargs)


# --- the synchronous face for tests ---------------------------------------------------------


class KubeApi:
    """The emulated API server on a thread of its own, driven synchronously by tests.

    `add_pod`, `patch_pod`, `delete_pod`, `pod`, `pods`, `events` act like a user with
    `kubectl` and are never subject to the injected faults (they work even while `down()`).
    """

    def __init__(self, directory: Path, namespace: str = "default") -> None:
        self.namespace = namespace
        self.kubeconfig_path = directory / "kubeconfig"
        self.emulator = ExtendedEmulator()
        for resource in (PODS, EVENTS):
            self.emulator.resources[resource] = kmock.ResourceInfo(
                kind=resource.plural.capitalize()[:-1], namespaced=True, verbs=ALL_VERBS
            )
        self.emulator.resources[NAMESPACES] = kmock.ResourceInfo(
            kind="Namespace", namespaced=False, verbs=ALL_VERBS
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-api", daemon=True)
        self._server: kmock.Server | None = None
        self.port = 0

    # ---- lifecycle

    def start(self) -> KubeApi:
        self._thread.start()
        self._call(self.emulator.__aenter__())
        self.up()
        self.kubeconfig_path.write_text(json.dumps(self.kubeconfig()))
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.down()
        with contextlib.suppress(Exception):
            self._call(self.emulator.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-test-token"}}],
            "contexts": [
                {
                    "name": "kmock",
                    "context": {"cluster": "kmock", "user": "kmock", "namespace": self.namespace},
                }
            ],
        }

    # ---- faults

    def down(self) -> None:
        """The API server goes away: its port refuses connections, open watches break."""
        server, self._server = self._server, None
        if server is not None:
            self._call(server.__aexit__(None, None, None))

    def up(self) -> None:
        """The API server is back, on the same port (so kubeconfigs stay valid)."""
        if self._server is None:
            server = kmock.Server(self.emulator, port=self.port or None, server_cls=_QuickServer)
            self._call(server.__aenter__())
            self._server = server
            self.port = server.port

    def slow(
        self, seconds: float, verbs: Iterable[str] | None = None, resource: str | None = None
    ) -> Fault:
        return self.add_fault(Fault(_verbs(verbs), resource, delay=seconds))

    def fail(
        self,
        status: int,
        verbs: Iterable[str] | None = None,
        resource: str | None = None,
        times: int | None = None,
    ) -> Fault:
        return self.add_fault(Fault(_verbs(verbs), resource, status=status, times=times))

    def forbid(self, verb: str, resource: str) -> Fault:
        """As if the ServiceAccount's Role lacked `verb` on `resource`."""
        return self.fail(403, [verb], resource)

    def add_fault(self, fault: Fault) -> Fault:
        self._loop.call_soon_threadsafe(self.emulator.faults.append, fault)
        return fault

    def heal(self, fault: Fault | None = None) -> None:
        """Remove one fault, or all of them (and bring the server up if it is down)."""

        def remove() -> None:
            if fault is None:
                self.emulator.faults.clear()
            elif fault in self.emulator.faults:
                self.emulator.faults.remove(fault)

        self._loop.call_soon_threadsafe(remove)
        if fault is None:
            self.up()

    # ---- acting like kubectl

    def add_pod(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": dict(labels or {}),
                "annotations": dict(annotations or {}),
            },
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
            "status": {"phase": "Running"},
        }
        return self._call(self.emulator.admin_create(PODS, body))

    def patch_pod(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """`kubectl patch --type=merge`."""
        return self._call(
            self.emulator.apply_patch(
                PODS, self.namespace, name, dict(patch), "application/merge-patch+json"
            )
        )

    def label_pod(self, name: str, key: str, value: str | None) -> dict[str, Any]:
        return self.patch_pod(name, {"metadata": {"labels": {key: value}}})

    def annotate_pod(self, name: str, key: str, value: str | None) -> dict[str, Any]:
        return self.patch_pod(name, {"metadata": {"annotations": {key: value}}})

    def delete_pod(self, name: str) -> None:
        self._call(self.emulator.admin_delete(PODS, self.namespace, name))

    def pod(self, name: str) -> dict[str, Any]:
        for pod in self.pods():
            if pod["metadata"]["name"] == name:
                return pod
        raise KeyError(name)

    def pods(self) -> list[dict[str, Any]]:
        return self._call(self.emulator.admin_list(PODS, self.namespace))

    def labels(self, name: str) -> dict[str, str]:
        return _labels(self.pod(name))

    def annotations(self, name: str) -> dict[str, str]:
        return dict(self.pod(name)["metadata"].get("annotations") or {})

    def events(self, pod: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        """Events in the namespace, oldest first, optionally about one pod / of one reason."""
        events = self._call(self.emulator.admin_list(EVENTS, self.namespace))
        return [
            event
            for event in events
            if (pod is None or event.get("involvedObject", {}).get("name") == pod)
            and (reason is None or event.get("reason") == reason)
        ]

    def reasons(self, pod: str) -> list[str]:
        return [event["reason"] for event in self.events(pod)]

    def requests(self, verb: str | None = None, resource: str | None = None) -> list[Any]:
        """Requests the API served (kmock's request records), optionally filtered."""

        def collect() -> list[Any]:
            return [
                r
                for r in list(self.emulator._requests)
                if ADMIN_HEADER not in r.headers
                and (verb is None or request_verb(r) == verb)
                and (resource is None or (r.resource is not None and r.resource.plural == resource))
            ]

        return self._call(_as_coroutine(collect))

    # ---- plumbing

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


async def _as_coroutine(function: Callable[[], T]) -> T:
    return function()


def _verbs(verbs: Iterable[str] | None) -> frozenset[str] | None:
    return None if verbs is None else frozenset(verbs)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after a generous `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (KeyError, IndexError, AssertionError) as error:
            last_error, result = error, None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {message or predicate}") from last_error
