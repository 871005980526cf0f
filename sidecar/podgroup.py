"""The group's pods as the operator's watch last showed them, by uid (a name is reused by
a StatefulSet's next pod, a uid never is).

Fed by the kopf handlers' events; read by the reconciler's handlers and its timer thread
(one lock). Late events of a pod already deleted or replaced are told apart and ignored;
`prune` drops the pods a fresh listing no longer shows (kopf sends no DELETED for a pod
deleted while its watch was away). Not guaranteed: that it is current (it lags the API
server by the watch's delivery, or by an outage of the watch), which is why the label
gate (sidecar/labelgate.py) asks the API server instead.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Mapping
from typing import Any

GONE_UIDS_KEPT = 256  # uids of deleted or replaced pods, to ignore their late events


def uid_of(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata", {})
    # Every pod has a uid; a body without one (a hand-made one) is known by its name.
    return str(metadata.get("uid") or metadata.get("name", ""))


@dataclasses.dataclass
class PodGroup:
    """The last seen labels and annotations of the group's pods (kopf's watch feeds it),
    by uid: a name is reused by the next pod of a StatefulSet, a uid never is."""

    pods: dict[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    seen: dict[str, float] = dataclasses.field(default_factory=dict)  # uid -> monotonic
    gone: collections.OrderedDict[str, None] = dataclasses.field(
        default_factory=collections.OrderedDict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def update(self, body: Mapping[str, Any], deleted: bool = False) -> bool:
        """Record an event of `body`; False if it is a late one of a pod already gone."""
        uid, name = uid_of(body), body.get("metadata", {}).get("name", "")
        with self.lock:
            if deleted:
                # Not marked gone: a pod whose group label was edited is DELETED for the
                # watch, and comes back (same uid) once the label is back.
                self._remove(uid, gone=False)
                return True
            if uid in self.gone:
                return False
            for other in [u for u, b in self.pods.items()
                          if u != uid and b.get("metadata", {}).get("name") == name]:
                self._remove(other)  # the same name, another pod: the old one is gone
            self.pods[uid] = body
            self.seen[uid] = time.monotonic()
            return True

    def remove(self, body: Mapping[str, Any]) -> None:
        with self.lock:
            self._remove(uid_of(body))

    def prune(self, present: set[str], since: float) -> list[str]:
        """Drop the pods a list made at `since` did not show and no event showed since:
        pods deleted while the watch was away. Returns their names."""
        with self.lock:
            ghosts = [u for u in self.pods if u not in present and self.seen[u] < since]
            names = [self.pods[u].get("metadata", {}).get("name", "") for u in ghosts]
            for uid in ghosts:
                self._remove(uid, gone=False)  # maybe only out of the selector
            return names

    def _remove(self, uid: str, gone: bool = True) -> None:
        self.pods.pop(uid, None)
        self.seen.pop(uid, None)
        if not gone:
            return
        self.gone[uid] = None
        while len(self.gone) > GONE_UIDS_KEPT:
            self.gone.popitem(last=False)

    def snapshot(self) -> list[Mapping[str, Any]]:
        with self.lock:
            return list(self.pods.values())

    def get(self, name: str) -> Mapping[str, Any] | None:
        with self.lock:
            for body in self.pods.values():
                if body.get("metadata", {}).get("name") == name:
                    return body
            return None
