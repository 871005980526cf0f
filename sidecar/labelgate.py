"""Exclusive leader labels: a pod is labelled leader only once no other pod of its group is.

The role label is what `kubectl get pods -l role=leader` lists and what the leader
Service selects: two pods carrying `leader` at once route clients to both. ZooKeeper hands
over in milliseconds, faster than the old leader's own label patch to `unknown`, so
without an order the two patches race (a watch of the pods saw two leaders in about half
of the graceful handovers). Two rules order them.

The leaving leader (a graceful leave or step-down; `StatusBoard.wait_demoted`, through
`KubernetesPublisher.wait_label_demoted`) lets its znode go only once its own label no
longer says leader: its demotion's patch answered, and no `leader` patch in flight. It
waits at most `board.BARRIER_SECONDS`, and not at all for a patch while its patches are
failing: a dead API must not hold the handover. This costs the ZooKeeper handover one API
round trip, and saves the successor the same (it finds the label off already).

The successor, before its publisher writes `leader` on its own pod, runs
`LeaderLabelGate.clear(epoch)` in the publisher's worker thread:

1. lists the group's pods labelled leader: one LIST with a label selector, a consistent
   read of the API server's current state. (Not the operator's watch: it is as fresh
   only while its stream flows, and a stalled or restarting watch would hide a label.)
2. for each other pod that says leader: if its epoch annotation is newer than ours, this
   sidecar is the stale one: it refuses (the label is not written; the election demotes
   it soon); otherwise it sets that pod's label to `follower` with a JSON patch whose
   `test` operations require the pod's uid, its label still `leader` and its epoch
   annotation as seen (the resourceVersion when it has none, or one that is not a
   number: the API server compares the JSON text). The API server checks them as it
   applies the patch, so a pod whose own sidecar wrote `unknown` meanwhile, or a new pod
   of the same name, is left alone (422; 404 when the pod is gone);
3. lists again when a patch found its pod changed (422, 409), at most `ROUNDS` times, and
   answers `CLEAR` only once no other pod says leader or every one that did was
   relabelled, or is gone (404).

Why this orders the labels: each relabel is answered, so applied, before the own label's
patch is sent; the API server gives every write a higher resourceVersion than the writes
it applied before, and a watch delivers a resource's events in resourceVersion order.
No watcher (the EndpointSlice controller, `kubectl get pods -w`) can see the new label
before the old one's removal. After a graceful handover whose barrier held, the LIST
finds nothing to clear: one LIST (about 2 ms on an idle local control plane) and the own
patch. When the barrier gave up (a slow API) or after a crash, the relabel is one patch
more.

Not covered, and how it is made small:
- a `leader` label written after the LIST by a sidecar that has lost its lease: its patch
  was in flight when it froze or was cut off, or its client gave up on a reply (5 s) that
  the API server applied later anyway. The publisher sends a `leader` patch only on a
  lease that has not run out, checked just before it is sent; a leaving leader waits for
  its own label (above); and the new leader's operator relabels a stale label it sees
  afterwards (sidecar/operator.py (b)).
- a label written by hand: the operator relabels it the same way.
Only this module and the operator write another pod's label.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
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
        self.relabelled: list[tuple[str, str | None, str | None]] = []  # (pod, uid, epoch)
        self.error: Exception | None = None  # the failure of the last FAILED answer
        self.verb = "list"  # of that failure: "list" or "patch"
        self.failed_pod: str | None = None

    def clear(self, epoch: int | None) -> Gate:
        """Relabel every other pod of the group that says leader (steps 1 to 3)."""
        self.error, self.verb, self.failed_pod = None, "list", None
        self.relabelled = []
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
