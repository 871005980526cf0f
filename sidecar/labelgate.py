"""Exclusive leader labels: a pod is labelled leader only once no other pod of its group is.

The role label is what `kubectl get pods -l role=leader` lists and what the leader
Service selects: two pods carrying `leader` at once route clients to both. ZooKeeper hands
over in milliseconds, faster than the old leader's own label patch to `unknown`, so
without an order the two patches race (an independent watch saw two leaders in about
half of the graceful handovers). Before the publisher writes `leader` on its own pod,
`LeaderLabelGate.clear(epoch)`, in its worker thread:

1. lists the group's pods labelled leader: one LIST with a label selector, read by the API
   server from its current state (no cache of ours that may lag);
2. for each other pod: if its epoch annotation is newer than ours, this sidecar is the
   stale one: it refuses (the label is not written; the election demotes it soon);
   otherwise it sets that pod's label to `follower` with a JSON patch whose `test`
   operations require the pod's uid, its label still `leader` and its epoch annotation
   as listed (the resourceVersion when it has none, or one that is not a number). The
   API server checks them as it applies the patch, so a pod whose own sidecar wrote
   `unknown` meanwhile, or a new pod of the same name, is left alone (422; 404 when the
   pod is gone);
3. lists again when a patch found its pod changed, at most `ROUNDS` times, and answers
   `CLEAR` only once a listing shows no other pod labelled leader or every one of them
   was relabelled by this call.

Why this orders the labels: each relabel is answered, so applied, before the own label's
patch is sent; the API server gives every write a higher resourceVersion than the writes
it applied before, and a watch delivers a resource's events in resourceVersion order.
No watcher (the EndpointSlice controller, `kubectl get pods -w`) can see the new label
before the old one's removal. The handover in ZooKeeper does not wait for any of this:
the old leader deletes its znode without waiting for an API request, and the cost falls
on the successor's label only: one LIST (about 2 ms on the local control plane) and,
when the old leader's own patch has not landed yet, one relabel (about 3 ms).

Not covered, and how it is made small:
- a `leader` label written after the LIST by a sidecar that is no longer leader (its patch
  was in flight when it lost its lease: frozen, partitioned). The publisher sends a
  `leader` patch only on a lease that has not run out, checked just before it is sent; a
  graceful leave or step-down waits (bounded) for a `leader` patch in flight to be
  answered before its znode goes; and the new leader's operator relabels a stale label
  it sees afterwards (sidecar/operator.py (b)).
- a label written by hand: the operator relabels it the same way.
Only this module and the operator write another pod's label.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .kubeapi import ApiError, KubeApi
from .state import Role

log = logging.getLogger(__name__)

ROUNDS = 3  # listings per call before it answers FAILED (pods changing under it)


class Gate(enum.Enum):
    CLEAR = "clear"  # no other pod of the group is labelled leader: write ours
    STALE = "stale"  # another pod is labelled leader with a newer epoch: do not write
    FAILED = "failed"  # the API failed or the group kept changing: try again later


def pointer(key: str) -> str:
    """A label or annotation key as a JSON pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def epoch_of(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


class LeaderLabelGate:
    """The check-and-clear before the own pod is labelled leader (module docstring)."""

    def __init__(self, api: KubeApi, namespace: str, pod: str, group_selector: str,
                 role_label: str, epoch_annotation: str) -> None:
        self.api = api
        self.namespace = namespace
        self.pod = pod
        self.role_label = role_label
        self.epoch_annotation = epoch_annotation
        self.selector = f"{group_selector},{role_label}={Role.LEADER.value}"
        # The group's pods labelled leader as the operator's watch shows them, or None
        # before it has listed the group (then the API server is asked).
        self.known_pods: Callable[[], list[Mapping[str, Any]] | None] | None = None
        self.relabelled: list[tuple[str, str | None, str | None]] = []  # (pod, uid, epoch)
        self.error: Exception | None = None  # the failure of the last FAILED answer
        self.verb = "list"  # of that failure: "list" or "patch"
        self.failed_pod: str | None = None

    def clear(self, epoch: int | None) -> Gate:
        """Relabel every other pod of the group that says leader (steps 1 to 3)."""
        self.error, self.verb, self.failed_pod = None, "list", None
        self.relabelled = []
        known = self.known_pods() if self.known_pods is not None else None
        if known is not None:
            outcome, changed = self._clear_all(known, epoch)
            if outcome is not Gate.CLEAR or not changed:
                return outcome
            # A pod was not as the watch last showed it: ask the API server.
        for _ in range(ROUNDS):
            try:
                listed = self.api.list_pods(self.namespace, self.selector)
            except Exception as error:
                self.error = error
                return Gate.FAILED
            outcome, changed = self._clear_all((listed or {}).get("items") or [], epoch)
            if outcome is not Gate.CLEAR or not changed:
                return outcome
        self.error = RuntimeError("the group's labels kept changing")
        return Gate.FAILED

    def _clear_all(self, pods: Iterable[Mapping[str, Any]],
                   epoch: int | None) -> tuple[Gate, bool]:
        """Relabel each other pod of `pods` that says leader; True if one had changed."""
        changed = False
        for pod in pods:
            metadata = pod.get("metadata") or {}
            if (metadata.get("name") == self.pod or (metadata.get("labels") or {}).get(
                    self.role_label) != Role.LEADER.value):
                continue
            outcome, moved = self._relabel(pod, epoch)
            if outcome is not Gate.CLEAR:
                return outcome, False
            changed = changed or moved
        return Gate.CLEAR, changed

    def _relabel(self, pod: Mapping[str, Any], epoch: int | None) -> tuple[Gate, bool]:
        """Relabel one pod as listed: CLEAR once it no longer says leader, and True when
        it had changed since the listing (then it is listed again)."""
        metadata = pod.get("metadata") or {}
        name = metadata.get("name", "")
        raw = (metadata.get("annotations") or {}).get(self.epoch_annotation)
        theirs = epoch_of(raw)
        if theirs is not None and epoch is not None and theirs > epoch:
            log.info("pod %r is labelled leader with epoch %d, newer than ours (%d): not "
                     "labelling this pod leader", name, theirs, epoch)
            return Gate.STALE, False
        label = f"/metadata/labels/{pointer(self.role_label)}"
        tests: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": metadata.get("uid")},
            {"op": "test", "path": label, "value": Role.LEADER.value}]
        if raw is not None and raw.isascii() and raw.isdigit():
            # Digits only: the API server compares the JSON text of the value, and any
            # other value's encoding may differ from ours (then the resourceVersion).
            tests.append({"op": "test", "path": "/metadata/annotations/"
                          f"{pointer(self.epoch_annotation)}", "value": raw})
        else:
            tests.append({"op": "test", "path": "/metadata/resourceVersion",
                          "value": metadata.get("resourceVersion")})
        try:
            self.api.json_patch_pod(self.namespace, name, [
                *tests, {"op": "replace", "path": label, "value": Role.FOLLOWER.value}])
        except ApiError as error:
            if error.status == 404:
                return Gate.CLEAR, False  # gone, and its label with it
            if error.status in (409, 422):
                return Gate.CLEAR, True  # no longer as listed: see it again
            self.error, self.verb, self.failed_pod = error, "patch", name
            return Gate.FAILED, False
        except Exception as error:
            self.error, self.verb, self.failed_pod = error, "patch", name
            return Gate.FAILED, False
        log.info("relabelled pod %r (epoch %s) from leader to follower before labelling "
                 "this pod leader (epoch %s)", name, raw, epoch)
        self.relabelled.append((name, metadata.get("uid"), raw))
        return Gate.CLEAR, False
